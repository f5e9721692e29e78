"""The built-in data sets, one module each, each a factory
``factory(root, *, split, **options)`` registered in :mod:`synergic.plugins.builtin`: ``root``
positional or keyword, everything else keyword-only, as a recipe passes them (``data.root`` as
``root``, ``data.options`` as keywords, ``data.download: true`` as ``download=True``):

- :mod:`~synergic.data.datasets.isic2016` - ISIC 2016 skin lesions (benign / malignant);
- :mod:`~synergic.data.datasets.isic2017` - ISIC 2017 Part 3 (nevus / melanoma / seborrheic
  keratosis, and the challenge's two binary tasks);
- :mod:`~synergic.data.datasets.isic2018` - ISIC 2018 Task 3, HAM10000 (seven diagnoses, lesion
  groups);
- :mod:`~synergic.data.datasets.folder` - a ``root/{train,val,test}/<class>/`` folder tree;
- :mod:`~synergic.data.datasets.csv_dataset` - images listed in CSV files;
- :mod:`~synergic.data.datasets.synthetic` - small generated lesions for demos and tests.

:mod:`~synergic.data.datasets.isic_files` holds what the ISIC challenge years share (their CSVs,
misplaced folders, opening a split, lesion groups, the steps of a download).
:class:`~synergic.data.datasets.base.FileImageDataset` is the common container
for data sets made of image files. Nothing is imported here, so that importing one data set does not import them all.
"""
