"""The training crop and the size the data preprocessor pads batches to must agree.

A config that shrinks ``RandomCrop.crop_size`` (or ``PadSegFields.size``) but keeps
``data_preprocessor.size`` trains on images padded back to the old size while fields the
preprocessor does not pad (annotator outputs, pseudo-labels) keep the crop's size: the loss
then fails deep inside with "size mismatch ([2, 21, 513, 513] vs [2, 64, 64])".
:func:`check_crop_size` finds this when the config is loaded and names both options.
"""

CROP_KEYS = dict(RandomCrop='crop_size', PadSegFields='size')


class CropSizeError(ValueError):
    """The training crop differs from the data preprocessor's size."""


def _pair(size):
    if isinstance(size, int):
        return (size, size)
    return tuple(int(s) for s in size)


def _walk(node, key):
    if isinstance(node, dict):
        yield key, node
        for k, v in node.items():
            yield from _walk(v, f'{key}.{k}')
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _walk(v, f'{key}.{i}')


def crop_sizes(cfg):
    """[(option, (h, w))] of every RandomCrop / PadSegFields in the training data."""
    found = []
    for key, node in _walk(cfg.get('train_dataloader') or {}, 'train_dataloader'):
        option = CROP_KEYS.get(node.get('type'))
        if option and node.get(option) is not None:
            found.append((f'{key}.{option}', _pair(node[option])))
    return found


def preprocessor_sizes(cfg):
    """[(option, (h, w))] of the data preprocessor that prepares training batches: the
    model's own (``model.data_preprocessor``, and the one a ``MultiBranchDataPreprocessor``
    wraps); a semi-supervised model's ``segmentor.data_preprocessor`` is not used for training
    and is not checked."""
    found = []
    model = cfg.get('model') or {}
    key = 'model'
    while 'data_preprocessor' not in model and isinstance(model.get('host'), dict):
        model, key = model['host'], f'{key}.host'
    node, key = model.get('data_preprocessor'), f'{key}.data_preprocessor'
    while isinstance(node, dict):
        if node.get('size') is not None:
            found.append((f'{key}.size', _pair(node['size'])))
        node, key = node.get('data_preprocessor'), f'{key}.data_preprocessor'
    return found


def check_crop_size(cfg):
    """Raise :class:`CropSizeError` when a training crop differs from the preprocessor's size."""
    pads = preprocessor_sizes(cfg)
    crops = crop_sizes(cfg)
    for pad_key, pad in pads:
        for crop_key, crop in crops:
            if crop != pad:
                h, w = crop
                raise CropSizeError(
                    f'the training crop {crop_key} = {crop} differs from {pad_key} = {pad}, '
                    'the size the data preprocessor pads every batch to: images would be '
                    'padded back to it while fields it does not pad (annotator outputs, '
                    'pseudo-labels) keep the crop size. Set both to the same size: add '
                    f"--cfg-options {pad_key}='({h},{w})' to the crop's change, or set "
                    f'{pad_key} in the config (docs/training.md, "Changing the crop").')
