"""ROI heads that carry each detection's proposal objectness and class probabilities.

Detectron2's standard heads return, per detection, only the score of its best
class. The crop policy of Kucer & Murray (Section 3.1) also filters on the
*objectness* of the RPN proposal a detection came from. These heads keep, for
every final detection (after score threshold, per-class NMS and top-k):

- ``objectness``: sigmoid of the RPN objectness logit of its proposal, [N] in [0, 1];
- ``class_probs``: the softmax over the K classes and background, [N, K + 1]
  (each row sums to 1; the last column is background).

Selected by one config key, ``MODEL.ROI_HEADS.NAME``: ``ObjectnessStandardROIHeads``
for FPN models, ``ObjectnessRes5ROIHeads`` for C4 models
(:data:`OBJECTNESS_HEADS` maps Detectron2's names to these).
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads, StandardROIHeads
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers, fast_rcnn_inference_single_image
from detectron2.structures import Instances


class ObjectnessFastRCNNOutputLayers(FastRCNNOutputLayers):
    """FastRCNNOutputLayers whose inference also returns objectness and class probabilities."""

    def inference(self, predictions, proposals: List[Instances]) -> Tuple[List[Instances], List[torch.Tensor]]:
        boxes = self.predict_boxes(predictions, proposals)
        scores = self.predict_probs(predictions, proposals)
        results, kept = [], []
        for boxes_i, scores_i, proposals_i in zip(boxes, scores, proposals):
            # fast_rcnn_inference_single_image drops non-finite rows before indexing;
            # map its indices back to proposals the same way.
            valid = (torch.isfinite(boxes_i).all(dim=1) & torch.isfinite(scores_i).all(dim=1)).nonzero().squeeze(1)
            inst, idx = fast_rcnn_inference_single_image(
                boxes_i, scores_i, proposals_i.image_size, self.test_score_thresh, self.test_nms_thresh,
                self.test_topk_per_image)
            source = valid[idx]
            inst.objectness = torch.sigmoid(proposals_i.objectness_logits[source])
            inst.class_probs = scores_i[source]
            results.append(inst)
            kept.append(source)
        return results, kept


@ROI_HEADS_REGISTRY.register()
class ObjectnessStandardROIHeads(StandardROIHeads):
    """StandardROIHeads (FPN) with :class:`ObjectnessFastRCNNOutputLayers`."""

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = ObjectnessFastRCNNOutputLayers(cfg, ret["box_head"].output_shape)
        return ret


@ROI_HEADS_REGISTRY.register()
class ObjectnessRes5ROIHeads(Res5ROIHeads):
    """Res5ROIHeads (C4) with :class:`ObjectnessFastRCNNOutputLayers`."""

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        channels = ret["box_predictor"].cls_score.in_features
        ret["box_predictor"] = ObjectnessFastRCNNOutputLayers(cfg, ShapeSpec(channels=channels, height=1, width=1))
        return ret


OBJECTNESS_HEADS = {
    "StandardROIHeads": "ObjectnessStandardROIHeads",
    "Res5ROIHeads": "ObjectnessRes5ROIHeads",
}
