"""The report's picture of what the trained networks predict: val images (0016E5), their ground
truth and the prediction of one seed's run of each method, side by side.

Each run's prediction is made once, by ``mmseg.apis.inference_model`` on its final checkpoint
and the config its training dumped, and kept as ``val_predictions/<stem>.png`` in its work dir
(class indices) and beside its kept logs, so that rewriting the report does not predict again."""
import os
import os.path as osp
import sys

import numpy as np

from training import PREDICTIONS, REPO, checkpoints

sys.path.insert(0, osp.join(REPO, 'tools'))
from visualize_pseudo_labels import PANEL_GAP, _text, colourise, legend  # noqa: E402

VAL = osp.join(REPO, 'data', 'camvid', 'images', 'val')
VAL_LABELS = osp.join(REPO, 'data', 'camvid', 'labels', 'val')


def val_stems(num=2):
    """``num`` val frames spread over the sequence (the same ones in every report)."""
    stems = sorted(osp.splitext(f)[0] for f in os.listdir(VAL) if f.endswith('.png')
                   or f.endswith('.jpg'))
    step = max(1, len(stems) // (num + 1))
    return [stems[step * (i + 1)] for i in range(num)]


def run_config(work_dir, config_name):
    """The config the run's training dumped into its work dir (every option it trained with)."""
    path = osp.join(work_dir, osp.basename(config_name))
    if not osp.exists(path):
        raise FileNotFoundError(f'{path}: the run in {work_dir} has no dumped config; its '
                                'training did not start through tools/train.py')
    return path


def can_predict(work_dir, stems=None):
    """Whether the run's predictions are kept or can be made (a checkpoint is there)."""
    kept = osp.join(work_dir, PREDICTIONS)
    if stems is None:
        stems = val_stems() if osp.isdir(VAL) else ()
    if stems and all(osp.exists(osp.join(kept, f'{s}.png')) for s in stems):
        return True
    return osp.isdir(work_dir) and bool(checkpoints(work_dir))


def predictions(work_dir, config_name, stems, device='cpu'):
    """{stem: (H, W) uint8 class indices} of the run's final checkpoint, cached in the run's
    ``val_predictions/``."""
    import cv2
    out, missing = {}, []
    for stem in stems:
        path = osp.join(work_dir, PREDICTIONS, f'{stem}.png')
        if osp.exists(path):
            out[stem] = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        else:
            missing.append(stem)
    if missing:
        from mmseg.apis import inference_model, init_model

        import conformalsam_mmseg  # noqa: F401  (registers the models)
        found = checkpoints(work_dir)
        if not found:
            raise FileNotFoundError(f'no iter_N.pth in {work_dir}')
        model = init_model(run_config(work_dir, config_name), found[-1][1], device=device)
        os.makedirs(osp.join(work_dir, PREDICTIONS), exist_ok=True)
        for stem in missing:
            sample = inference_model(model, _image(stem))
            pred = sample.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8)
            cv2.imwrite(osp.join(work_dir, PREDICTIONS, f'{stem}.png'), pred)
            out[stem] = pred
    return out


def _image(stem):
    for ext in ('.png', '.jpg'):
        if osp.exists(osp.join(VAL, stem + ext)):
            return osp.join(VAL, stem + ext)
    raise FileNotFoundError(f'no {stem}.png or {stem}.jpg in {VAL}')


def plot(columns, stems, path, classes, palette, font=0.4, scale=0.5):
    """Write ``path``: per stem one row, image | ground truth | each column's prediction, each
    panel ``scale`` times the image's size; ``columns`` is [(title, {stem: prediction})]."""
    import cv2

    def resize(a, interpolation):
        size = (round(a.shape[1] * scale), round(a.shape[0] * scale))
        return cv2.resize(a, size, interpolation=interpolation)
    rows = []
    for stem in stems:
        image = resize(cv2.imread(_image(stem))[..., ::-1], cv2.INTER_AREA)
        gt = cv2.imread(osp.join(VAL_LABELS, stem + '.png'), cv2.IMREAD_UNCHANGED)
        panels = [image] + [resize(colourise(labels, palette), cv2.INTER_NEAREST)
                            for labels in [gt] + [preds[stem] for _, preds in columns]]
        gap = np.full((image.shape[0], PANEL_GAP, 3), 255, np.uint8)
        body = [panels[0]]
        for p in panels[1:]:
            body += [gap, p]
        rows.append(np.concatenate(body, axis=1))
        rows.append(np.full((PANEL_GAP, rows[-1].shape[1], 3), 255, np.uint8))
    width, w = rows[0].shape[1], image.shape[1] + PANEL_GAP
    titles = np.full((36, width, 3), 255, np.uint8)
    for i, title in enumerate(['val image', 'ground truth'] + [t for t, _ in columns]):
        for j, line in enumerate(title.split('\n')[:2]):
            _text(titles, line, (i * w + 4, 14 + 16 * j), font)
    picture = np.concatenate([titles] + rows + [legend(width, classes, palette,
                                                       rejected=False)], axis=0)
    cv2.imwrite(path, picture[..., ::-1])
    return path
