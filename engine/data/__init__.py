"""The data pipeline: COCO datasets, transforms, samplers and the synthetic shapes set.

Modules (import them directly; this package imports nothing, so ``engine.data.shapes``
and ``engine.data.cocofile`` stay usable without torch):

* ``shapes``     the built-in synthetic dataset in COCO format (numpy + PIL)
* ``cocofile``   reading, checking and packing a COCO instances json (numpy)
* ``coco``       ``CocoDetection``, the torch ``Dataset``
* ``transforms`` the ``sample_transforms`` ops
* ``loader``     ``collate``, ``TrainSampler`` and the loader/dataset builders
* ``split``      PaddleDetection's labeled/unlabeled split of a COCO json (stdlib)
* ``imagefolder`` listing a folder of images (stdlib)
* ``unlabeled``  ``UnlabeledImages``, the torch ``Dataset`` of ``UnsupTrainDataset``
* ``semi``       weak/strong views and the labeled + unlabeled ``SemiLoader``
* ``images``     image headers and upright RGB decoding (EXIF orientation applied; PIL)
* ``summary``    ``DatasetSummary``: images, boxes per class, drops, for people (stdlib)
* ``cocobuild``  ``CocoBuilder``: imported boxes -> a COCO dict (clip, drop, count)
* ``voc``, ``yolo`` Pascal VOC / YOLO labels -> COCO (``dettui data import``, VOCDataSet)
* ``sources``    a dataset section's annotations as a COCO dict, whatever the format
* ``check``      ``dettui data check``: statistics + the first broken file (torch-free)
"""
