"""The shell recipes of README.md and docs/*.md, read from the files, so that tests run them as
written (with the offline substitutions each test states)."""
import os.path as osp
import re

from conftest import REPO

FENCE = re.compile(r'```bash\n(.*?)```', re.S)
SMALL_LOADERS = ['train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
                 'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
                 'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']


def bash_blocks(doc):
    """The ```bash blocks of ``doc`` (a path relative to the repository)."""
    with open(osp.join(REPO, doc), encoding='utf-8') as f:
        return FENCE.findall(f.read())


def bash_block(doc, containing):
    """The one bash block of ``doc`` that contains ``containing``."""
    blocks = [b for b in bash_blocks(doc) if containing in b]
    assert len(blocks) == 1, f'{doc}: {len(blocks)} bash blocks contain {containing!r}'
    return blocks[0]


def commands(block):
    """The lines of a block with continuations joined and comments dropped."""
    joined = re.sub(r'\s*\\\n\s*', ' ', block)
    lines = [re.sub(r'\s+#.*$', '', line).strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith('#')]


def python_block(doc, containing):
    """The one ```python block of ``doc`` that contains ``containing``."""
    with open(osp.join(REPO, doc), encoding='utf-8') as f:
        blocks = [b for b in re.findall(r'```python\n(.*?)```', f.read(), re.S)
                  if containing in b]
    assert len(blocks) == 1, f'{doc}: {len(blocks)} python blocks contain {containing!r}'
    return blocks[0]
