"""PNG grids of the annotator's labels before and after conformal filtering.

  python tools/visualize_pseudo_labels.py CONFIG --cache DIR --thresholds JSON --num N --out DIR
  python tools/visualize_pseudo_labels.py CONFIG --cache DIR --alpha 0.05 [--calib-split labeled] \\
      --num N --out DIR

For each of N images of ``--split`` (default: the labeled images, which have ground truth) it
writes OUT/<stem>.png, four panels side by side:

  image | annotator label (argmax) | calibrated label (conformally filtered) | ground truth

coloured with the data set's palette (metainfo ``palette``), a title row, and a legend of the
class names below. Pixels the filter rejects are WHITE WITH GREY DIAGONAL HATCHING; void /
ignored ground truth (255) is BLACK (dark grey when black is a class colour); the legend says
so. The grid is 4 x the (scaled) image width plus 3 x 4 px of white between panels.

Thresholds:
  --thresholds JSON  a ConformalCalibrator JSON (``ConformalCalibrator.save_json``), the
                     ``calibration_report.json`` that ConformalCalibrationHook writes into a
                     work dir, or a JSON list of K numbers (or one number);
  --alpha A          calibrate now: a ConformalCalibrator (``--mode``, ``--score``) on the
                     cache's dense probabilities of the ``--calib-split`` images (default:
                     labeled) against their ground truth, as ConformalCalibrationHook does.

The filter's rule, score, mode and background class come from the config's
``model.pseudo_label_head`` when it has one (else ``foreground_first``, and class 0 as
background only if it is named 'background'); ``--rule`` / ``--background-index`` override
them.
"""
import argparse
import json
import math
import os
import os.path as osp
import sys

import numpy as np

TOOLS = osp.dirname(osp.abspath(__file__))
REJECTED_COLOUR = (255, 255, 255)     # RGB: white ...
HATCH_COLOUR = (150, 150, 150)        # ... with grey diagonal lines
VOID_COLOURS = (((0, 0, 0), 'black'), ((64, 64, 64), 'dark grey'))  # ground-truth void (255):
# black, or dark grey when black is a class colour
PANEL_GAP = 4                         # white columns between panels
PANEL_TITLES = ('image', 'annotator (argmax)', 'calibrated (filtered)', 'ground truth')


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        prog='visualize_pseudo_labels.py', description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='the (ConformalSAM or plain) training config')
    parser.add_argument('--cache', required=True, metavar='DIR', help='the annotator cache')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--thresholds', metavar='JSON',
                        help='calibration JSON (save_json / calibration_report.json) or a '
                        'list of q_k')
    source.add_argument('--alpha', type=float, help='calibrate now at this error rate')
    parser.add_argument('--calib-split', default='labeled',
                        help='images to calibrate on with --alpha (default: %(default)s)')
    parser.add_argument('--mode', default=None, choices=('pixel', 'class', 'image'),
                        help='calibration mode with --alpha (default: the config\'s, or pixel)')
    parser.add_argument('--score', default=None,
                        help='nonconformity score (default: the config\'s, or lac)')
    parser.add_argument('--rule', default=None,
                        choices=('foreground_first', 'singleton', 'argmax_in_set'),
                        help='set-to-label rule (default: the config\'s, or foreground_first)')
    parser.add_argument('--background-index', default='auto',
                        help='background class for foreground_first, or none (default: the '
                        'config\'s; else 0 if class 0 is named background)')
    parser.add_argument('--split', default='labeled',
                        help='images to draw: train, val, test, labeled, unlabeled or NAME '
                        '(as tools/generate_pseudo_labels.py; default: %(default)s)')
    parser.add_argument('--num', type=int, default=8, help='images to draw (default: 8)')
    parser.add_argument('--out', required=True, metavar='DIR', help='folder for the PNGs')
    parser.add_argument('--scale', type=float, default=None,
                        help='panel scale (default: enlarge images narrower than 240 px by an '
                        'integer factor, else 1)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='K=V',
                        help='override config settings, e.g. '
                        'train_dataloader.dataset.data_root=data/x')
    return parser.parse_args(argv)


def _gpl():
    """tools/generate_pseudo_labels.py as a module (its split and ground-truth helpers)."""
    if TOOLS not in sys.path:
        sys.path.insert(0, TOOLS)
    import generate_pseudo_labels
    return generate_pseudo_labels


# --- thresholds ---------------------------------------------------------------------------
def thresholds_from_json(path, num_classes, class_names=None):
    """q_k (K,) float64 from a calibrator JSON, a calibration report or a plain list."""
    import torch
    with open(path) as f:
        data = json.load(f)

    def as_q(values):
        q = torch.tensor([math.inf if v is None else float(v) for v in values],
                         dtype=torch.float64)
        if q.numel() == 1:
            q = q.expand(num_classes).clone()
        if q.numel() != num_classes:
            raise SystemExit(f'error: {path} holds {q.numel()} thresholds for {num_classes} '
                             'classes')
        return q

    if isinstance(data, (int, float)):
        return as_q([data])
    if isinstance(data, list):
        return as_q(data)
    if data.get('format') == 'conformalsam.calibrator':
        from conformalsam_mmseg.conformal import ConformalCalibrator
        return as_q(ConformalCalibrator.load_json(path).thresholds().tolist())
    if data.get('thresholds') is not None:
        return as_q(data['thresholds'])
    cal = data.get('calibration')
    if isinstance(cal, dict):  # ConformalCalibrationHook's calibration_report.json
        if cal.get('mode') == 'image':
            return as_q([cal.get('q')])
        groups = cal.get('groups') or []
        if cal.get('mode') == 'class':
            if class_names is not None and [g['name'] for g in groups] != list(class_names):
                raise SystemExit(f'error: {path} was calibrated for the classes '
                                 f'{[g["name"] for g in groups]}, the config has '
                                 f'{list(class_names)}')
        return as_q([g.get('q') for g in groups])
    raise SystemExit(f'error: {path} is neither a ConformalCalibrator JSON, a '
                     'calibration_report.json, nor a list of thresholds')


def calibrate(cfg, cache, split, num_classes, alpha, mode, score):
    """q_k from the cache's dense probabilities vs ground truth on ``split``'s images."""
    from conformalsam_mmseg.annotators.labeled_pairs import calibrate_from_cache
    from conformalsam_mmseg.conformal import ConformalCalibrator
    infos, _ = _gpl().build_image_list(cfg, split)
    calibrator = ConformalCalibrator(num_classes, alpha=alpha, mode=mode, score=score,
                                     check_probs=False)  # top-k probabilities don't sum to 1
    calibrate_from_cache([calibrator], cache, infos, num_classes)
    print(f'calibrated on {len(infos)} {split} images: {calibrator}', flush=True)
    return calibrator.thresholds()


# --- drawing ------------------------------------------------------------------------------
def void_colour(palette):
    """(RGB, name) of void pixels: black, unless black is a class colour."""
    used = {tuple(int(c) for c in p) for p in palette}
    return next((c for c in VOID_COLOURS if c[0] not in used), VOID_COLOURS[-1])


def colourise(labels, palette, rejected=None):
    """(H, W) labels -> (H, W, 3) uint8 RGB; 255 = void (see :func:`void_colour`), or where
    ``rejected`` is True: white with grey diagonal hatching."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:len(palette)] = np.asarray(palette, np.uint8)
    lut[255] = void_colour(palette)[0]
    out = lut[labels]
    if rejected is not None and rejected.any():
        out[rejected] = hatch(labels.shape)[rejected]
    return out


def hatch(shape, period=6, width=2):
    """(H, W, 3) RGB: white with grey diagonal lines, the 'rejected' fill."""
    h, w = shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    lines = ((x + y) % period) < width
    out = np.empty((h, w, 3), np.uint8)
    out[:] = REJECTED_COLOUR
    out[lines] = HATCH_COLOUR
    return out


def _text(canvas, text, org, scale=0.45, colour=(0, 0, 0), thickness=1):
    import cv2
    cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness,
                cv2.LINE_AA)


def _text_width(text, scale=0.45, thickness=1):
    import cv2
    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0]


def legend(width, classes, palette, font=0.45, swatch=14, pad=6, rejected=True):
    """(h, width, 3) RGB legend: a swatch and the name of every class, then the rejected
    (unless ``rejected`` is False) and void fills, wrapped into rows."""
    items = [(name, np.full((swatch, swatch, 3), colour, np.uint8))
             for name, colour in zip(classes, palette)]
    if rejected:
        items.append(('rejected by the filter (white, grey hatching)', hatch((swatch, swatch))))
    colour, name = void_colour(palette)
    items.append((f'void / ignored ground truth ({name})',
                  np.full((swatch, swatch, 3), colour, np.uint8)))
    row_h = swatch + pad
    rows, x = [[]], pad
    for name, sw in items:
        w = swatch + 4 + _text_width(name, font) + 2 * pad
        if x + w > width and rows[-1]:
            rows.append([])
            x = pad
        rows[-1].append((x, name, sw))
        x += w
    canvas = np.full((len(rows) * row_h + pad, width, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        y = pad + r * row_h
        for x, name, sw in row:
            canvas[y:y + swatch, x:x + swatch] = sw
            canvas[y:y + swatch, x:x + 1] = 0
            canvas[y:y + swatch, x + swatch - 1:x + swatch] = 0
            canvas[y:y + 1, x:x + swatch] = 0
            canvas[y + swatch - 1:y + swatch, x:x + swatch] = 0
            _text(canvas, name, (x + swatch + 4, y + swatch - 3), font)
    return canvas


def grid(image_bgr, annotator_label, filtered, gt, palette, classes, *, scale=1.0,
         caption=''):
    """The four panels side by side (width = 4 x the scaled image width + 3 x PANEL_GAP),
    titles above, legend below; RGB uint8."""
    import cv2
    h, w = image_bgr.shape[:2]
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    rejected = filtered == 255
    panels = [
        image_bgr[..., ::-1],
        colourise(annotator_label, palette),
        colourise(filtered, palette, rejected=rejected),
        colourise(gt, palette) if gt is not None else _no_gt(h, w),
    ]
    resized = []
    for i, p in enumerate(panels):
        interp = cv2.INTER_AREA if (i == 0 and scale < 1) else (
            cv2.INTER_LINEAR if i == 0 else cv2.INTER_NEAREST)
        p = np.ascontiguousarray(p)
        resized.append(p if (sh, sw) == (h, w) else cv2.resize(p, (sw, sh),
                                                                interpolation=interp))
    if (sh, sw) != (h, w):  # hatch the scaled panel, so the lines keep their pixel width
        mask = cv2.resize(rejected.astype(np.uint8), (sw, sh),
                          interpolation=cv2.INTER_NEAREST).astype(bool)
        resized[2][mask] = hatch((sh, sw))[mask]
    gap = np.full((sh, PANEL_GAP, 3), 255, np.uint8)
    body = np.concatenate([resized[0], gap, resized[1], gap, resized[2], gap, resized[3]],
                          axis=1)
    width = body.shape[1]
    title_h = 22
    titles = np.full((title_h, width, 3), 255, np.uint8)
    font = 0.45 if sw >= 160 else 0.35
    for i, t in enumerate(PANEL_TITLES):
        _text(titles, t, (i * (sw + PANEL_GAP) + 4, title_h - 7), font)
    parts = [titles, body]
    if caption:
        cap = np.full((20, width, 3), 255, np.uint8)
        _text(cap, caption, (4, 14), 0.4)
        parts.append(cap)
    parts.append(legend(width, classes, palette))
    return np.concatenate(parts, axis=0)


def _no_gt(h, w):
    out = np.full((h, w, 3), 200, np.uint8)
    _text(out, 'no label file', (4, min(h - 4, 16)), 0.4)
    return out


def default_scale(width):
    return 1.0 if width >= 240 else float(math.ceil(240 / width))


# --- main ---------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    import cv2
    import mmcv
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import conformalsam_mmseg  # noqa: F401  (registers datasets and transforms)
    from conformalsam_mmseg.annotators import AnnotatorCache, image_stem, topk_to_dense
    from conformalsam_mmseg.conformal import filter_pseudo_labels
    gpl = _gpl()

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    csam = cfg.model.get('pseudo_label_head') or {}   # a ConformalSAM config's filter
    infos, classes = gpl.build_image_list(cfg, args.split)
    palette = _palette(cfg, args.split, len(classes))
    k = len(classes)
    cache = AnnotatorCache(args.cache, num_classes=k, class_names=classes)
    rule = args.rule or csam.get('rule', 'foreground_first')
    score = args.score or csam.get('score', 'lac')
    background = _background(args.background_index, csam, classes)

    if args.thresholds:
        q = thresholds_from_json(args.thresholds, k, classes)
        source = f'thresholds from {args.thresholds}'
    else:
        mode = args.mode or csam.get('mode', 'pixel')
        q = calibrate(cfg, cache, args.calib_split, k, args.alpha, mode, score)
        source = f'calibrated now: alpha={args.alpha:g}, mode={mode}, on {args.calib_split}'
    q_text = ('q=' + _fmt_q(q[0]) if bool((q == q[0]).all()) else 'q per class')
    print(f'{source}; q = ' + ', '.join(f'{c}: {_fmt_q(v)}' for c, v in zip(classes, q)),
          flush=True)

    os.makedirs(args.out, exist_ok=True)
    written = []
    for info in infos[:max(0, args.num)]:
        img_path = info['img_path']
        stem = image_stem(img_path)
        image = mmcv.imread(img_path, channel_order='bgr')
        h, w = image.shape[:2]
        entry = cache.load(stem, height=h, width=w, img_path=img_path)
        probs = topk_to_dense(entry.index, entry.prob, k)
        filtered = filter_pseudo_labels(probs.unsqueeze(0), q, rule=rule, score=score,
                                        background_index=background)[0].numpy()
        seg = info.get('seg_map_path')
        gt = gpl.load_ground_truth(info) if seg and osp.isfile(seg) else None
        kept = float((filtered != 255).mean())
        caption = (f'{stem}: {source}, {q_text}, rule={rule}; kept {100 * kept:.1f}% of '
                   'pixels')
        if gt is not None:
            valid = gt != 255
            acc_a = float((entry.index[0] == gt)[valid].mean()) if valid.any() else math.nan
            keep = valid & (filtered != 255)
            acc_f = float((filtered == gt)[keep].mean()) if keep.any() else math.nan
            caption += f'; accuracy {100 * acc_a:.1f}% -> {100 * acc_f:.1f}% on kept'
        scale = args.scale or default_scale(w)
        canvas = grid(image, entry.index[0], filtered, gt, palette, classes, scale=scale,
                      caption=caption if _text_width(caption, 0.4) < 4 * w * scale else
                      f'{stem}: kept {100 * kept:.1f}%, {q_text}')
        path = osp.join(args.out, stem + '.png')
        if not cv2.imwrite(path, canvas[..., ::-1]):
            raise SystemExit(f'error: cannot write {path}')
        written.append(path)
    print(f'{len(written)} grids -> {args.out}', flush=True)
    return dict(paths=written, thresholds=q, rule=rule, background_index=background)


def _palette(cfg, split, num_classes):
    from mmseg.registry import DATASETS
    ds_cfg = _gpl().split_dataset_cfg(cfg, split)
    metainfo = ds_cfg.get('metainfo') or {}
    palette = metainfo.get('palette') or DATASETS.get(ds_cfg['type']).METAINFO.get('palette')
    if not palette or len(palette) < num_classes:
        rng = np.random.default_rng(0)
        palette = rng.integers(0, 255, (num_classes, 3)).tolist()
    return [tuple(int(c) for c in p) for p in palette[:num_classes]]


def _background(arg, csam, classes):
    if arg != 'auto':
        return None if str(arg).lower() == 'none' else int(arg)
    if 'background_index' in csam:
        return csam['background_index']
    return 0 if str(classes[0]).lower() == 'background' else None


def _fmt_q(v):
    v = float(v)
    return 'inf' if math.isinf(v) else f'{v:.4f}'


if __name__ == '__main__':
    main()
