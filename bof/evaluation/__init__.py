"""Evaluation exactly as the official tools compute it: Pascal VOC (2007 11-point and area) and COCO AP.

Names are imported on first use, so ``bof evaluate`` starts without loading what it does not need.
"""

from bof.lazy import lazy_exports

_EXPORTS = {
    "coco_results": "bof.evaluation.api",
    "evaluate_coco_predictions": "bof.evaluation.api",
    "evaluate_voc_predictions": "bof.evaluation.api",
    "voc_detections": "bof.evaluation.api",
    "voc_ground_truth": "bof.evaluation.api",
    "evaluate_coco": "bof.evaluation.coco",
    "read_coco_results": "bof.evaluation.formats",
    "read_voc_results": "bof.evaluation.formats",
    "write_coco_results": "bof.evaluation.formats",
    "write_voc_results": "bof.evaluation.formats",
    "ClassDetections": "bof.evaluation.voc",
    "ImageGroundTruth": "bof.evaluation.voc",
    "average_precision": "bof.evaluation.voc",
    "evaluate_voc": "bof.evaluation.voc",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("bof.evaluation", _EXPORTS)
