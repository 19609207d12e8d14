"""The unlabeled pipeline with the annotator's output: three steps ConformalSAM adds.

``annotated_pipeline(pipeline, cache_dir, classes)`` returns a copy of a semi-supervised
unlabeled pipeline (configs/_base_/datasets/semi/) with

- ``LoadAnnotatorOutput`` after ``LoadImageFromFile``: the cached class probabilities of the
  image (top-k index and probability maps), which the geometric transforms then move with it;
- ``PadSegFields`` after ``RandomCrop``: the annotator fields padded to the crop like the image
  (255 = padding, never a label), unless the pipeline pads there already (AllSpark's);
- ``PackAnnotatorOutput`` in place of the weak branch's ``PackSegInputs``, and the annotator
  fields listed in ``MultiBranch.exclusive_keys['unsup_weak']``: only the weak view, which the
  pseudo-label head labels, carries them; the strong views never copy them.

``SemiDataset(annotator_cache=...)`` applies it to its unlabeled part; ``tools/print_config.py``
prints the result.
"""
import copy

from mmseg.registry import DATASETS

from ..annotators.fields import MAP_KEY, TOPK_KEY


def _index(pipeline, type_name, where):
    for i, step in enumerate(pipeline):
        if step.get('type') == type_name:
            return i
    raise ValueError(f'the unlabeled pipeline has no {type_name} ({where}); the annotator '
                     'output needs the semi-supervised pipelines of '
                     'configs/_base_/datasets/semi/.')


def dataset_classes(dataset_cfg):
    """The class names a dataset config will have (its metainfo, else its type's)."""
    metainfo = dataset_cfg.get('metainfo') or {}
    if metainfo.get('classes'):
        return tuple(metainfo['classes'])
    dataset_type = dataset_cfg['type']
    cls = DATASETS.get(dataset_type) if isinstance(dataset_type, str) else dataset_type
    return tuple(cls.METAINFO['classes'])


def annotated_pipeline(pipeline, cache_dir, classes):
    """A copy of ``pipeline`` (a list of transform configs) with the annotator steps."""
    pipeline = copy.deepcopy(list(pipeline))
    if any(step.get('type') == 'LoadAnnotatorOutput' for step in pipeline):
        raise ValueError('the unlabeled pipeline already loads the annotator output; remove '
                         'its LoadAnnotatorOutput / PadSegFields / PackAnnotatorOutput or the '
                         "dataset's annotator_cache (one of the two adds them)")
    load = dict(type='LoadAnnotatorOutput', cache_dir=cache_dir, num_classes=len(classes),
                classes=tuple(classes))
    pipeline.insert(_index(pipeline, 'LoadImageFromFile', 'to load the image') + 1, load)
    at = _index(pipeline, 'RandomCrop', 'to crop')
    pad = dict(type='PadSegFields', size=pipeline[at]['crop_size'], pad_val=dict(img=0, seg=255))
    following = pipeline[at + 1] if at + 1 < len(pipeline) else {}
    if not (following.get('type') == 'PadSegFields'   # AllSpark's pipelines pad already
            and tuple(following.get('size', ())) == tuple(pad['size'])
            and dict(following.get('pad_val') or {}).get('seg') == 255):
        pipeline.insert(at + 1, pad)
    branches = pipeline[_index(pipeline, 'MultiBranch', 'to make the views')]
    weak = branches['unsup_weak']
    weak[_index(weak, 'PackSegInputs', "in the 'unsup_weak' branch")] = dict(
        type='PackAnnotatorOutput')
    exclusive = dict(branches.get('exclusive_keys') or {})
    weak_keys = list(exclusive.get('unsup_weak', []))
    exclusive['unsup_weak'] = weak_keys + [k for k in (MAP_KEY, TOPK_KEY) if k not in weak_keys]
    branches['exclusive_keys'] = exclusive
    return pipeline
