"""The benchmark's configs at CamVid's full resolution (480 x 360), for a GPU.

The CPU benchmark trains on the half-resolution images (every ``Resize`` to 240 x 180) with
160 px crops. ``full_resolution(cfg)`` is the same config at twice the pixels per side: every
resize to 240 x 180 becomes 480 x 360 (CamVid's own size, so the images stay as they are), and
every 160 px crop size (``RandomCrop``, the ``PadSegFields`` padding, the data preprocessors'
``size``) becomes 320 px; OHEM's ``min_kept`` (a pixel count, 15.6% of the batch's pixels in
the hosts' configs) becomes four times as many. Everything else (network, batch, schedule,
learning rate, seeds, the annotator's cache, which is at 480 x 360 either way) is unchanged.
"""
import copy

HALF, FULL = (240, 180), (480, 360)
HALF_CROP, FULL_CROP = (160, 160), (320, 320)
# the keys that hold the image scale or the crop, and what each becomes
RESCALED = {'scale': {HALF: FULL}, 'crop_size': {HALF_CROP: FULL_CROP},
            'size': {HALF_CROP: FULL_CROP}}
# pixel counts, which grow with the crop's area
AREA_RATIO = (FULL_CROP[0] * FULL_CROP[1]) // (HALF_CROP[0] * HALF_CROP[1])
PIXEL_COUNTS = ('min_kept',)


def full_resolution(cfg):
    """A copy of ``cfg`` (a dict or mmengine ``Config``) at full resolution, and the number of
    values rewritten per key. Raises ``ValueError`` when the config has no half-resolution resize
    or no 160 px crop: it is then not one of the benchmark's configs."""
    counts = {key: 0 for key in (*RESCALED, *PIXEL_COUNTS)}

    def walk(node):
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                new = RESCALED.get(key, {}).get(_pair(value))
                if new is not None:
                    counts[key] += 1
                    out[key] = new
                elif key in PIXEL_COUNTS and isinstance(value, int):
                    counts[key] += 1
                    out[key] = value * AREA_RATIO
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, (list, tuple)):
            return type(node)(walk(v) for v in node)
        return node

    as_dict = cfg.to_dict() if hasattr(cfg, 'to_dict') else copy.deepcopy(cfg)
    out = walk(as_dict)
    missing = [k for k in ('scale', 'crop_size') if not counts[k]]
    if missing:
        raise ValueError(f'the config has no {" and no ".join(missing)} of the half-resolution '
                         f'benchmark ({HALF} images, {HALF_CROP} crops) to rescale')
    return out, counts


def _pair(value):
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    return None


def write_full_resolution(config_path, out_path):
    """Read ``config_path`` (inheritance resolved), write it at full resolution to
    ``out_path`` (mmengine's dump, which ``tools/train.py`` reads); returns the counts."""
    import os
    import os.path as osp

    from mmengine.config import Config
    cfg, counts = full_resolution(Config.fromfile(config_path))
    os.makedirs(osp.dirname(out_path), exist_ok=True)
    Config(cfg).dump(out_path + '.tmp.py')
    os.replace(out_path + '.tmp.py', out_path)
    return counts
