"""What a calibration depends on, as one string: equal strings give equal thresholds.

The calibration reads the annotator's cached probabilities of the labeled images and their
ground truth, through the pseudo-label head's filter options; the network plays no part. So a
checkpoint's thresholds can be reused on resume when the options, the labeled images, and their
cache entries and label files are the same: :func:`calibration_key` hashes the options and, per
labeled image, the stem and the size and modification time of its cache entry and label file
(a remade cache or a changed label shows in them; reading every entry would cost as much as
calibrating).
"""
import hashlib
import json
import os

from ...annotators.base import image_stem
from ...annotators.cache import entry_path


def _stat(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def calibration_key(head, dataset, holdout_folds):
    """sha1 of the calibration's inputs: ``head`` (its filter options and classes), the
    ``SemiDataset``'s annotator cache and labeled images, and the hook's ``holdout_folds``."""
    cache = dataset.annotator_cache
    labeled = dataset.labeled
    images = []
    for i in range(len(labeled)):
        info = labeled.get_data_info(i)
        stem = image_stem(info['img_path'])
        images.append([stem, _stat(entry_path(cache, stem)), _stat(info.get('seg_map_path'))])
    options = dict(filter=head.filter, alpha=head.alpha, mode=head.mode, score=head.score,
                   rule=head.rule, background_index=head.background_index,
                   risk_cfg=head.risk_cfg, classes=list(head.classes),
                   holdout_folds=holdout_folds, cache=os.path.abspath(cache))
    text = json.dumps(dict(options=options, images=images), sort_keys=True, default=str)
    return hashlib.sha1(text.encode('utf-8')).hexdigest()
