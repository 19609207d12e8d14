"""Write a trained semi-supervised model's network as a plain MMSegmentation model.

  python tools/export_student.py CONFIG CHECKPOINT --out DIR [--network student|teacher]

CONFIG and CHECKPOINT are a training config (ConformalSAM, UniMatch, AllSpark, SelfReliance, or
a plain segmentor) and a checkpoint that ``tools/train.py`` wrote with it. The tool writes

- ``DIR/<name>.py``: an mmseg 1.x config of the network alone (``model`` = the host's
  ``segmentor``, an ``EncoderDecoder``, with its data preprocessor, no pretrained-weight
  loading), the test pipeline, dataloaders and evaluators of CONFIG, ``default_scope='mmseg'``;
- ``DIR/<name>.pth``: the network's weights (``student.*`` of the model, or ``teacher.*`` with
  ``--network teacher`` / ``semi_test_cfg.predict_on='teacher'``) and the checkpoint's
  ``dataset_meta``;

then builds the written config and loads the weights strictly, so a mismatch fails here. The
network trains and predicts alone: pseudo-label heads, memories and hooks are training parts.
When the network uses a module of this package (EfficientNet-Lite0, the AllSpark neck, the
UniMatch or AllSpark heads) the config keeps ``custom_imports=['conformalsam_mmseg']`` and the
tool says so; otherwise (ResNet, MiT with mmseg's heads) any mmseg 1.x installation runs it::

    from mmseg.apis import init_model, inference_model, show_result_pyplot
    model = init_model('DIR/<name>.py', 'DIR/<name>.pth', device='cpu')
    result = inference_model(model, 'image.jpg')
    show_result_pyplot(model, 'image.jpg', result, out_file='mask.png', show=False)
"""
import argparse
import copy
import os
import os.path as osp

import torch
from mmengine.config import Config

WRAPPERS = {'ConformalSAM': 'host.'}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='the training config')
    p.add_argument('checkpoint', help='a checkpoint written by tools/train.py with it')
    p.add_argument('--out', required=True, help='folder for <name>.py and <name>.pth')
    p.add_argument('--name', help='file name stem (default: the config\'s)')
    p.add_argument('--network', choices=('student', 'teacher'),
                   help='which network of a semi-supervised model (default: the one it '
                   'predicts with, semi_test_cfg.predict_on)')
    return p.parse_args(argv)


def network_and_prefix(model_cfg, network=None):
    """(the network's config, the state-dict prefix of its weights) of a model config."""
    prefix = ''
    while model_cfg.get('type') in WRAPPERS:
        prefix += WRAPPERS[model_cfg['type']]
        model_cfg = model_cfg['host']
    if 'segmentor' not in model_cfg:          # a plain segmentor
        return copy.deepcopy(model_cfg), prefix
    which = network or (model_cfg.get('semi_test_cfg') or {}).get('predict_on', 'student')
    net = copy.deepcopy(model_cfg['segmentor'])
    if 'data_preprocessor' not in net:
        outer = model_cfg.get('data_preprocessor') or {}
        net['data_preprocessor'] = copy.deepcopy(outer.get('data_preprocessor', outer))
    return net, f'{prefix}{which}.'


def without_weight_loading(net):
    """The network config with every pretrained-weight load switched off (the weights come
    from the exported checkpoint)."""
    def clean(node):
        if isinstance(node, dict):
            if 'init_cfg' in node and isinstance(node['init_cfg'], dict) and \
                    node['init_cfg'].get('type') == 'Pretrained':
                node['init_cfg'] = None
            if node.get('type') == 'EfficientNetLite0':
                node['pretrained'] = False
            for v in node.values():
                clean(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                clean(v)
    net = copy.deepcopy(net)
    net.pop('pretrained', None)
    clean(net)
    return net


def own_types(node, found=None):
    """Registered type names in ``node`` that mmseg (or mmengine/mmcv) does not provide."""
    from mmseg.registry import MODELS
    from mmengine.registry import DefaultScope
    found = set() if found is None else found
    if isinstance(node, dict):
        t = node.get('type')
        if isinstance(t, str):
            with DefaultScope.overwrite_default_scope('mmseg'):
                cls = MODELS.get(t)
            if cls is not None and cls.__module__.startswith('conformalsam_mmseg'):
                found.add(t)
        for v in node.values():
            own_types(v, found)
    elif isinstance(node, (list, tuple)):
        for v in node:
            own_types(v, found)
    return found


def export(config, checkpoint, out_dir, name=None, network=None):
    """Write the plain config and checkpoint; returns (config path, checkpoint path, own
    types)."""
    import conformalsam_mmseg  # noqa: F401  (resolves this package's types)
    cfg = Config.fromfile(config)
    net, prefix = network_and_prefix(cfg.model.to_dict(), network)
    net = without_weight_loading(net)
    ckpt = torch.load(checkpoint, map_location='cpu', weights_only=False)
    state = ckpt.get('state_dict', ckpt)
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not weights:
        raise SystemExit(f'error: {checkpoint} has no weights under "{prefix}"; is it a '
                         f'checkpoint of {config}?')
    own = own_types(net)
    plain = dict(default_scope='mmseg', model=net)
    if own:
        plain['custom_imports'] = dict(imports=['conformalsam_mmseg'],
                                       allow_failed_imports=False)
    for key in ('test_pipeline', 'test_dataloader', 'test_evaluator', 'val_dataloader',
                'val_evaluator', 'test_cfg', 'val_cfg', 'env_cfg', 'vis_backends',
                'visualizer', 'log_processor', 'tta_model', 'tta_pipeline'):
        if key in cfg:
            plain[key] = copy.deepcopy(cfg[key])
    for loader in ('test_dataloader', 'val_dataloader'):
        ds = (plain.get(loader) or {}).get('dataset') or {}
        ds.pop('annotator_cache', None)
    name = name or osp.splitext(osp.basename(config))[0]
    os.makedirs(out_dir, exist_ok=True)
    cfg_path, ckpt_path = (osp.join(out_dir, f'{name}{ext}') for ext in ('.py', '.pth'))
    Config(plain).dump(cfg_path)
    meta = {k: v for k, v in (ckpt.get('meta') or {}).items() if k == 'dataset_meta'}
    torch.save(dict(state_dict=weights, meta=meta), ckpt_path)

    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(Config.fromfile(cfg_path).model)
    model.load_state_dict(weights, strict=True)   # the written pair fits exactly
    return cfg_path, ckpt_path, sorted(own)


def main(argv=None):
    args = parse_args(argv)
    cfg_path, ckpt_path, own = export(args.config, args.checkpoint, args.out, args.name,
                                      args.network)
    print(f'wrote {cfg_path} and {ckpt_path} (weights checked by a strict load)')
    if own:
        print('the network uses ' + ', '.join(own) + ' from conformalsam_mmseg: the config '
              'imports it (custom_imports); install this package beside mmseg to run it')
    else:
        print('the network is plain mmseg: any mmseg 1.x installation runs it')
    print(f"from mmseg.apis import init_model, inference_model\n"
          f"model = init_model('{cfg_path}', '{ckpt_path}', device='cpu')\n"
          f"result = inference_model(model, 'image.jpg')")


if __name__ == '__main__':
    main()
