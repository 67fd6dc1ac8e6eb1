"""Datasets: Pascal VOC devkits, COCO JSON, and the embedded synthetic dataset (``bof.data.synth``).

Import from the modules: ``bof.data.voc`` (``VOCDetection``), ``bof.data.coco`` (``CocoDetection``),
``bof.data.detection`` (``DetectionDataset``, ``collate_detection``), ``bof.data.download``.
"""
