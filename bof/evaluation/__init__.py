"""Evaluation exactly as the official tools compute it: Pascal VOC (2007 11-point and area) and COCO AP.

Import from the modules: ``bof.evaluation.voc`` and ``bof.evaluation.coco`` (the official tools'
computations), ``bof.evaluation.api`` (from a model's detections), ``bof.evaluation.formats``
(the results files).
"""
