"""Foundation descriptors: an image encoder of open_clip, timm or Hugging Face transformers used as a descriptor
model without training (a "day one" model), wherever a trained checkpoint is used.

    open_clip:hf-hub:Marqo/marqo-fashionSigLIP     open_clip:ViT-B-32 --weights FILE.pt
    timm:vit_small_patch14_dinov2.lvd142m          timm:hf-hub:timm/convnext_small.fb_in22k
    hf:facebook/dinov2-small                       hf:/path/to/a/saved/folder

- ``spec.py``: parsing ``library:name``;
- ``sources.py``: where the weights come from (``--weights`` file or folder, else the Hugging Face cache,
  downloaded only when the machine is online and allowed to);
- ``folder.py``: the model folder detret keeps (``detret-foundation.json`` + the weight files, hard-linked):
  its identity is the hash of the weight files and the loading layout, never of a path;
- ``families.py``: each library's own loader, preprocessing and image embedding;
- ``net.py``: :class:`FoundationNet`, the loaded model with the interface of a retrieval network.
"""
from .folder import MANIFEST_NAME, FoundationFolder, is_foundation_folder, materialise, read_folder
from .net import FoundationNet, load_foundation
from .spec import LIBRARIES, FoundationSpec

__all__ = ["LIBRARIES", "FoundationSpec", "FoundationFolder", "FoundationNet", "MANIFEST_NAME",
           "is_foundation_folder", "load_foundation", "materialise", "read_folder"]
