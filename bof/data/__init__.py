"""Datasets: Pascal VOC devkits, COCO JSON, and the embedded synthetic dataset (``bof.data.synth``).

Names are imported on first use, so light submodules (``bof.data.download``) and the
``bof`` command start without loading torch.
"""

from bof.lazy import lazy_exports

_EXPORTS = {
    "VOC_CLASSES": "bof.data.voc",
    "VOCDetection": "bof.data.voc",
    "read_class_names": "bof.data.voc",
    "CocoDetection": "bof.data.coco",
    "detection_to_coco": "bof.data.coco",
    "DetectionDataset": "bof.data.detection",
    "Sample": "bof.data.detection",
    "collate_detection": "bof.data.detection",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("bof.data", _EXPORTS)
