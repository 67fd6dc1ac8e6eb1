"""The embedded synthetic detection dataset, written in the real Pascal VOC devkit layout.

Real VOC/COCO cannot be downloaded on every machine, so ``bof synth`` generates a
dataset that the same loaders, evaluators and pipeline consume unchanged::

    <out>/VOCdevkit/classes.txt
    <out>/VOCdevkit/VOC2007/{Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/{train,val,trainval,test}.txt}
    <out>/annotations/instances_{train,val,trainval,test}.json   (COCO; file_name relative to VOCdevkit/)
    <out>/classification/{train,val}/<class>/*.jpg              (ImageFolder, one object an image)
    <out>/synth.json                                             (settings, seed, counts, versions)

Every image is a pure function of (seed, index), so the same seed gives byte-identical
files whatever the number of worker processes. ``bof.data.synth.config.SynthConfig`` holds the
settings, ``bof.data.synth.writer.generate`` writes the dataset.
"""
