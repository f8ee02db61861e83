"""DARN's attribute loss beside the ranking loss, against torch's cross-entropy called by hand."""
import torch
import torch.nn.functional as F

from detret.retrieval.attribute_heads import DescriptorsAndLogits, attribute_loss, with_attribute_loss
from detret.retrieval.model import build_retrieval_net


def test_attribute_loss_is_the_mean_cross_entropy_of_known_values():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 2 + 3, generator=g, dtype=torch.float64)
    classes = torch.tensor([[0, 2], [1, -1], [-1, 0], [1, 1]])
    first = F.cross_entropy(logits[[0, 1, 3], :2], torch.tensor([0, 1, 1]))
    second = F.cross_entropy(logits[[0, 2, 3], 2:], torch.tensor([2, 0, 1]))
    assert torch.allclose(attribute_loss(logits, classes, [2, 3]), (first + second) / 2)
    nothing_known = torch.full((4, 2), -1)
    assert attribute_loss(logits, nothing_known, [2, 3]).item() == 0.0


def test_the_step_loss_adds_the_weighted_attribute_loss_to_the_ranking_loss():
    torch.manual_seed(0)
    model = build_retrieval_net("resnet18", dim=8, pretrained=False, attributes={"a": ["x", "y"]}).eval()
    out = DescriptorsAndLogits(model)(torch.randn(3, 3, 48, 48), "shop")
    assert out.shape == (3, 8 + 2)
    classes = torch.tensor([[0], [1], [-1]])

    def ranking(d):
        return d.sum()

    loss = with_attribute_loss(ranking, classes, 8, [2], weight=0.5)(out)
    assert torch.allclose(loss, out[:, :8].sum() + 0.5 * F.cross_entropy(out[:2, 8:], torch.tensor([0, 1])))
