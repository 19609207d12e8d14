"""Annotators: SEEM's output conversion, CLIPSeg end to end (tiny, offline), the simulated one."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conformalsam_mmseg.annotators import (ANNOTATORS, PrecomputedAnnotator, SEEMAnnotator,
                                           SimulatedAnnotator, build_annotator,
                                           seem_semantic_probs, write_entry)
from conformalsam_mmseg.datasets.synthetic_shapes import SHAPES_CLASSES, make_shapes_image


def test_registry_names():
    for name in ('SEEMAnnotator', 'CLIPSegAnnotator', 'PrecomputedAnnotator',
                 'SimulatedAnnotator'):
        assert ANNOTATORS.get(name) is not None
    ann = build_annotator(dict(type='SimulatedAnnotator', gap=0.3, seed=4))
    assert isinstance(ann, SimulatedAnnotator) and ann.gap == 0.3
    with pytest.raises(KeyError, match='unknown annotator'):
        build_annotator(dict(type='NoSuchAnnotator'))


# --- SEEM -------------------------------------------------------------------------------
def _hand_seem(pred_logits, pred_masks, image_size, padded_size, valid_size):
    """SEEM's semantic inference written out step by step, in float64, query by query."""
    masks = F.interpolate(pred_masks[None].double(), size=padded_size, mode='bilinear',
                          align_corners=False)[..., :valid_size[0], :valid_size[1]]
    masks = F.interpolate(masks, size=image_size, mode='bilinear', align_corners=False)[0]
    cls = torch.softmax(pred_logits.double(), dim=1)[:, :-1]  # drop "no object"
    out = torch.zeros((cls.shape[1], ) + tuple(image_size), dtype=torch.float64)
    for q in range(cls.shape[0]):
        out += cls[q][:, None, None] * torch.sigmoid(masks[q])[None]
    return out


def test_seem_conversion_matches_hand_einsum_on_real_shapes():
    # VOC image 375 x 500, short side resized to 512 -> 512 x 683, padded to 32: 512 x 704;
    # SEEM: 101 queries, 21 classes + no object, masks at 1/4 of the padded input
    torch.manual_seed(0)
    q, k = 101, 21
    image_size, valid, padded = (375, 500), (512, 683), (512, 704)
    pred_logits = torch.randn(q, k + 1) * 3
    pred_masks = torch.randn(q, padded[0] // 4, padded[1] // 4) * 4
    raw = seem_semantic_probs(pred_logits, pred_masks, image_size, padded_size=padded,
                              valid_size=valid, normalize='none')
    hand = _hand_seem(pred_logits, pred_masks, image_size, padded, valid)
    assert raw.shape == (k, ) + image_size and raw.dtype == torch.float32
    torch.testing.assert_close(raw.double(), hand, rtol=1e-4, atol=1e-4)  # float32 sums

    probs = seem_semantic_probs(pred_logits, pred_masks, image_size, padded_size=padded,
                                valid_size=valid)  # default: normalize='sum'
    torch.testing.assert_close(probs.sum(0), torch.ones(image_size), rtol=0, atol=1e-5)
    torch.testing.assert_close(probs.double(), hand / hand.sum(0, keepdim=True), rtol=1e-4,
                               atol=1e-6)
    assert torch.equal(probs.argmax(0), raw.argmax(0))
    clamped = seem_semantic_probs(pred_logits, pred_masks, image_size, padded_size=padded,
                                  valid_size=valid, normalize='clamp')
    assert clamped.max() <= 1 and torch.equal(clamped, raw.clamp(0, 1))


def test_seem_conversion_geometry_and_padding():
    # query 0 says class 1 on the left half, query 1 says class 0 on the right half; the
    # padded columns (beyond the valid width) claim class 2 and must not leak in
    logits = torch.tensor([[-9., 9., -9., -9.], [9., -9., -9., -9.], [-9., -9., 9., -9.]])
    masks = torch.full((3, 8, 12), -20.)
    masks[0, :, :4] = 20
    masks[1, :, 4:8] = 20
    masks[2, :, 8:] = 20  # padding only
    probs = seem_semantic_probs(logits, masks, (30, 40), padded_size=(32, 48),
                                valid_size=(32, 32))
    label = probs.argmax(0)
    assert (label[:, :15] == 1).all() and (label[:, 25:] == 0).all()
    assert (probs[2] < 0.01).all()  # only bilinear blur at the edge of the valid region


def test_seem_conversion_rejects_bad_shapes():
    with pytest.raises(ValueError, match='pred_masks'):
        seem_semantic_probs(torch.zeros(5, 3), torch.zeros(4, 8, 8), (16, 16))
    with pytest.raises(ValueError, match='normalize'):
        seem_semantic_probs(torch.zeros(5, 3), torch.zeros(5, 8, 8), (16, 16), normalize='x')


def test_seem_annotator_says_what_to_install():
    with pytest.raises(ImportError, match='clone the SEEM repository') as info:
        SEEMAnnotator(config_file='focall_unicl_lang_v1.yaml', checkpoint='seem_focall_v1.pt')
    assert 'checkpoint' in str(info.value)


# --- CLIPSeg ----------------------------------------------------------------------------
def _bytes_to_unicode():
    """GPT-2 / CLIP's byte-to-character table."""
    bs = (list(range(ord('!'), ord('~') + 1)) + list(range(ord('\xa1'), ord('\xac') + 1))
          + list(range(ord('\xae'), ord('\xff') + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@pytest.fixture(scope='module')
def tiny_clipseg(tmp_path_factory):
    """A randomly initialised CLIPSeg with tiny configs and a tiny CLIP tokenizer, saved as a
    Hugging Face folder: the annotator loads it like a downloaded model, offline."""
    transformers = pytest.importorskip('transformers')
    folder = tmp_path_factory.mktemp('clipseg')
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars + [c + '</w>' for c in chars])}
    merges = ['c a', 'ca t</w>', 'd o', 'do g</w>', 'p h', 'ph o', 'pho t', 'phot o</w>']
    for m in merges:
        vocab[m.replace(' ', '')] = len(vocab)
    vocab['<|startoftext|>'] = len(vocab)
    vocab['<|endoftext|>'] = len(vocab)
    (folder / 'vocab.json').write_text(json.dumps(vocab))
    (folder / 'merges.txt').write_text('#version: 0.2\n' + '\n'.join(merges) + '\n')
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(folder))
    assert tokenizer.tokenize('a cat') == ['a</w>', 'cat</w>']
    eos = vocab['<|endoftext|>']
    config = transformers.CLIPSegConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37,
                         num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=32, bos_token_id=vocab['<|startoftext|>'],
                         eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=3,
                           num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=16, reduce_dim=16, extract_layers=[0, 1, 2],
        decoder_num_attention_heads=2, decoder_intermediate_size=20)
    torch.manual_seed(0)
    model = transformers.CLIPSegForImageSegmentation(config).eval()
    image_processor = transformers.CLIPImageProcessor(
        size=dict(height=32, width=32), do_center_crop=False)
    processor = transformers.CLIPSegProcessor(image_processor=image_processor,
                                              tokenizer=tokenizer)
    model.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    return folder, model, processor


def _reference_clipseg_logits(model, processor, image_bgr, prompts):
    """CLIPSeg's own forward, one (image, prompt) pair per batch row."""
    rgb = np.ascontiguousarray(image_bgr[..., ::-1])
    inputs = processor(text=prompts, images=[rgb] * len(prompts), padding=True,
                       return_tensors='pt')
    with torch.no_grad():
        return model(**inputs).logits.reshape(len(prompts), 32, 32)


def test_clipseg_tiny_offline_end_to_end(tiny_clipseg):
    from conformalsam_mmseg.annotators import CLIPSegAnnotator
    folder, model, processor = tiny_clipseg
    classes = ['cat', 'dog', 'photo']
    ann = build_annotator(dict(type='CLIPSegAnnotator', pretrained=str(folder), device='cpu',
                               local_files_only=True, prompt_batch=2))
    assert isinstance(ann, CLIPSegAnnotator)
    image = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    probs = ann.annotate(image, classes)
    assert probs.shape == (3, 40, 52) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(0), torch.ones(40, 52), rtol=0, atol=1e-5)

    # the annotator's one-vision-pass path equals CLIPSeg's forward on every pair
    prompts = ann.prompts(classes)
    assert prompts == ['a photo of a cat.', 'a photo of a dog.', 'a photo of a photo.']
    ref = _reference_clipseg_logits(model, processor, image, prompts)
    torch.testing.assert_close(ann.logits(image, classes), ref, rtol=1e-4, atol=1e-5)
    ref_probs = F.interpolate(ref[None], size=(40, 52), mode='bilinear',
                              align_corners=False)[0].softmax(0)
    torch.testing.assert_close(probs, ref_probs, rtol=1e-4, atol=1e-5)


def test_clipseg_background_and_sigmoid(tiny_clipseg):
    from conformalsam_mmseg.annotators import CLIPSegAnnotator
    folder, model, processor = tiny_clipseg
    image = np.random.default_rng(1).integers(0, 256, (24, 30, 3), dtype=np.uint8)
    classes = ['background', 'cat', 'dog']
    ann = CLIPSegAnnotator(pretrained=str(folder), device='cpu', local_files_only=True,
                           background_index=0, background_logit=0.5, prompt_template='{}')
    assert ann.prompts(classes) == [None, 'cat', 'dog']
    logits = ann.logits(image, classes)
    assert torch.all(logits[0] == 0.5)
    torch.testing.assert_close(
        logits[1:], _reference_clipseg_logits(model, processor, image, ['cat', 'dog']),
        rtol=1e-4, atol=1e-5)
    sig = CLIPSegAnnotator(pretrained=str(folder), device='cpu', local_files_only=True,
                           activation='sigmoid', prompt_template='{}')
    probs = sig.annotate(image, ['cat', 'dog'])
    up = F.interpolate(logits[None, 1:], size=(24, 30), mode='bilinear', align_corners=False)
    torch.testing.assert_close(probs, up[0].sigmoid(), rtol=1e-4, atol=1e-5)


# --- simulated --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def shapes_images():
    rng = np.random.default_rng(0)
    return [make_shapes_image(rng, 72, 96) for _ in range(6)]


def _run(ann, images):
    return [ann.annotate(img, SHAPES_CLASSES, img_path=f'shapes/{i:03d}.png', gt_seg_map=gt)
            for i, (img, gt) in enumerate(images)]


def test_simulated_is_seeded_and_order_independent(shapes_images):
    a = _run(SimulatedAnnotator(gap=0.6, seed=3), shapes_images)
    b = _run(SimulatedAnnotator(gap=0.6, seed=3), shapes_images)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    # an image's output depends on its name, not on what was annotated before it
    ann = SimulatedAnnotator(gap=0.6, seed=3)
    img, gt = shapes_images[4]
    alone = ann.annotate(img, SHAPES_CLASSES, img_path='shapes/004.png', gt_seg_map=gt)
    assert torch.equal(alone, a[4])
    c = _run(SimulatedAnnotator(gap=0.6, seed=4), shapes_images)
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    p = a[0]
    assert p.shape == (4, 72, 96) and p.dtype == torch.float32
    torch.testing.assert_close(p.sum(0), torch.ones(72, 96), rtol=0, atol=1e-5)


def _accuracy(outputs, images):
    right = total = 0
    for p, (_, gt) in zip(outputs, images):
        right += int((p.argmax(0).numpy() == gt).sum())
        total += gt.size
    return right / total


def test_simulated_higher_gap_is_less_accurate(shapes_images):
    acc = [_accuracy(_run(SimulatedAnnotator(gap=g, seed=0), shapes_images), shapes_images)
           for g in (0.0, 0.3, 0.7, 1.0)]
    assert acc[0] == 1.0
    assert acc[0] > acc[1] > acc[2] > acc[3]
    assert acc[3] > 0.4  # degraded, not destroyed


def test_simulated_overconfidence_makes_wrong_labels_confident(shapes_images):
    def wrong_confidence(oc):
        outs = _run(SimulatedAnnotator(gap=0.6, seed=0, overconfidence=oc), shapes_images)
        values = [p.max(0).values.numpy()[p.argmax(0).numpy() != gt]
                  for p, (_, gt) in zip(outs, shapes_images)]
        return float(np.concatenate(values).mean())

    low, mid, high = wrong_confidence(0.0), wrong_confidence(1.0), wrong_confidence(4.0)
    assert low < mid < high
    assert high > 0.8


def test_simulated_error_mechanisms():
    gt = np.zeros((80, 100), np.uint8)
    gt[10:14, 10:14] = 1          # a 16-pixel object: missed at min_area 0.01 (80 px)
    gt[30:70, 40:90] = 2          # a large object
    gt[0:5, :] = 255              # void: filled from its neighbours
    ann = SimulatedAnnotator(gap=0.0, min_area=0.01, miss_prob=1.0, seed=0)
    pred = ann.predicted_labels(gt, 3, img_path='x.png')
    assert (pred[10:14, 10:14] == 0).all() and (pred[30:70, 40:90] == 2).all()
    assert (pred[0:5] == 0).all()
    # boundary errors stay within the band around boundaries
    big = np.where(gt == 1, 0, gt)  # the large object's boundary only (band: 4 px)
    ann = SimulatedAnnotator(gap=0.0, boundary_width=0.05, boundary_flip=0.5, seed=0)
    pred = ann.predicted_labels(big, 3, img_path='x.png')
    changed = np.argwhere(pred != np.where(big == 255, 0, big))
    assert len(changed) > 0
    assert (changed[:, 0] >= 30 - 4).all() and (changed[:, 0] < 70 + 4).all()
    # class confusions follow the confusion matrix: 2 can only become 1
    confusion = np.array([[0, 1, 0], [1, 0, 0], [0, 1, 0]], float)
    ann = SimulatedAnnotator(gap=0.0, confusion=confusion, confusion_rate=1.0, seed=0)
    pred = ann.predicted_labels(gt, 3, img_path='x.png')
    assert (pred[30:70, 40:90] == 1).all()


def test_simulated_needs_ground_truth():
    ann = SimulatedAnnotator()
    assert ann.needs_ground_truth
    with pytest.raises(ValueError, match='ground truth'):
        ann.annotate(np.zeros((8, 8, 3), np.uint8), ['a', 'b'])
    with pytest.raises(ValueError, match='outside'):
        ann.annotate(np.zeros((8, 8, 3), np.uint8), ['a', 'b'],
                     gt_seg_map=np.full((8, 8), 7, np.uint8))


def test_precomputed_annotator_reads_the_cache(tmp_path, shapes_images):
    img, gt = shapes_images[0]
    probs = SimulatedAnnotator(gap=0.5).annotate(img, SHAPES_CLASSES, img_path='a/im0.png',
                                                 gt_seg_map=gt)
    write_entry(str(tmp_path), probs, stem='im0', class_names=SHAPES_CLASSES,
                annotator='SimulatedAnnotator', topk=4)
    ann = build_annotator(dict(type='PrecomputedAnnotator', cache_dir=str(tmp_path)))
    assert isinstance(ann, PrecomputedAnnotator)
    back = ann.annotate(img, SHAPES_CLASSES, img_path='elsewhere/im0.jpg')
    assert (back - probs).abs().max() <= 1 / 510 + 1e-6
