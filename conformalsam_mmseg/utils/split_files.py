"""Split files (mmseg ann_files: one image stem per line) checked before anything is built.

An empty split reaches mmengine as "need at least one array to concatenate" when the dataset
is serialised, and a missing one as a bare FileNotFoundError; :func:`check_split_files` says
which option names which file, and :func:`missing_images` lets a tool refuse a split whose
images are not all there before it spends time on the others.
"""
import os.path as osp


class SplitFileError(ValueError):
    """A split file is missing, empty, or names images that do not exist."""


def _datasets(node, key):
    if isinstance(node, dict):
        if isinstance(node.get('ann_file'), str) and node.get('type'):
            yield key, node
        for k, v in node.items():
            if k != 'pipeline':
                yield from _datasets(v, f'{key}.{k}')
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _datasets(v, f'{key}.{i}')


def split_file_path(ds_cfg):
    """The ann_file of a dataset config as mmengine opens it (joined to data_root)."""
    ann = ds_cfg['ann_file']
    root = ds_cfg.get('data_root') or ''
    return ann if osp.isabs(ann) or not root else osp.join(root, ann)


def read_stems(path):
    with open(path, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip()]


def check_split_files(cfg, loaders=('train_dataloader', 'val_dataloader')):
    """Raise :class:`SplitFileError` when a dataset's split file is missing or lists no image."""
    for loader in loaders:
        for key, ds in _datasets((cfg.get(loader) or {}).get('dataset') or {},
                                 f'{loader}.dataset'):
            if not ds['ann_file']:
                continue  # no split file: the dataset lists its image folder
            path = split_file_path(ds)
            if not osp.isfile(path):
                raise SplitFileError(
                    f'{key}.ann_file: the split file {path} does not exist (ann_file '
                    f'{ds["ann_file"]!r} under data_root {ds.get("data_root")!r}); make it '
                    'with tools/make_splits.py (docs/datasets.md) or point the option at it')
            if not read_stems(path):
                raise SplitFileError(
                    f'{key}.ann_file: the split file {path} lists no image; a split needs at '
                    'least one image stem per line (tools/make_splits.py writes them)')


def missing_images(infos):
    """Image paths of data infos (``img_path``) that do not exist."""
    return [info['img_path'] for info in infos if not osp.isfile(info['img_path'])]


def missing_images_message(missing, total, split_file):
    shown = ', '.join(missing[:5]) + (f', ... ({len(missing) - 5} more)' if len(missing) > 5
                                      else '')
    return (f'{len(missing)} of the {total} images of the split file {split_file} do not exist: '
            f'{shown}. Fix the split file or the data root / img_path prefix (docs/datasets.md)')
