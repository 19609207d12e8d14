"""Print a config as it trains: inheritance resolved, --cfg-options applied.

  python tools/print_config.py CONFIG [--cfg-options KEY=VALUE ...] [--out FILE]

Like MMSegmentation's ``tools/misc/print_config.py``; for a ConformalSAM config it then prints
the unlabeled pipeline as ``SemiDataset(annotator_cache=...)`` builds it (the three annotator
steps it adds: ``LoadAnnotatorOutput``, ``PadSegFields``, ``PackAnnotatorOutput``), and a
summary of what trains: the model, its host, the pseudo-label head's filter and the hooks.
``--out`` also writes the config (mmengine's dump) to FILE.
"""
import argparse
import sys

from mmengine.config import Config, DictAction

import conformalsam_mmseg  # noqa: F401  (registers the components)
from conformalsam_mmseg.datasets.annotator_pipeline import annotated_pipeline, dataset_classes
from conformalsam_mmseg.engine import check_current_form


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file path')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings, as tools/train.py does')
    parser.add_argument('--out', help='also write the final config to this file')
    return parser.parse_args(argv)


def trained_pipeline(cfg):
    """The unlabeled pipeline a ConformalSAM config trains with, or None for other configs."""
    dataset = cfg.train_dataloader.get('dataset', {})
    if dataset.get('type') != 'SemiDataset' or not dataset.get('annotator_cache'):
        return None
    unlabeled = dataset['unlabeled']
    return annotated_pipeline(unlabeled['pipeline'], dataset['annotator_cache'],
                              dataset_classes(unlabeled))


def summary(cfg):
    model = cfg.model
    lines = [f"model: {model['type']}"]
    if model['type'] == 'ConformalSAM':
        head = model['pseudo_label_head']
        lines.append(f"  host: {model['host']['type']} "
                     f"({model['host'].get('segmentor', {}).get('type', '-')} network)")
        keys = ('filter', 'alpha', 'mode', 'score', 'rule', 'background_index',
                'confidence_threshold')
        lines.append('  pseudo_label_head: ' + ', '.join(
            f'{k}={head.get(k)!r}' for k in keys if k in head))
        lines.append(f"  self_reliance_at: {model.get('self_reliance_at', 0.75)!r}")
        lines.append(f"  annotator_cache: {cfg.train_dataloader.dataset.get('annotator_cache')}")
    hooks = [h['type'] for h in cfg.get('custom_hooks') or []]
    lines.append(f"custom_hooks: {', '.join(hooks) if hooks else '-'}")
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    try:
        check_current_form(cfg)
    except ValueError as e:
        sys.exit(f'error: {e}')
    print(cfg.pretty_text)
    pipeline = trained_pipeline(cfg)
    if pipeline is not None:
        print('# The unlabeled pipeline as SemiDataset(annotator_cache=...) builds it:')
        print(Config(dict(unlabeled_pipeline_as_trained=pipeline)).pretty_text)
    print('# What trains:\n' + '\n'.join('#   ' + ln for ln in summary(cfg).splitlines()))
    if args.out:
        cfg.dump(args.out)


if __name__ == '__main__':
    main()
