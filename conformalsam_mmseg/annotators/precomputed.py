"""Annotator outputs computed elsewhere (another machine, another environment), read back."""
from .base import BaseAnnotator, image_stem
from .cache import AnnotatorCache, topk_to_dense
from .registry import ANNOTATORS


@ANNOTATORS.register_module()
class PrecomputedAnnotator(BaseAnnotator):
    """Reads an image's probabilities from an annotator cache (``annotators/cache.py``).

    Run any model wherever it runs, write one cache file per image with
    ``conformalsam_mmseg.annotators.cache.write_entry`` (numpy, torch and the standard library
    only), copy the folder here, and use it like any other annotator. Classes outside the
    stored top-k read back as probability 0; probabilities are the dequantised ``v / 255``.

    Args:
        cache_dir: the cache folder.
        annotator: if given, entries must have been written by this annotator name.
    """

    def __init__(self, cache_dir, annotator=None):
        self.cache_dir = cache_dir
        self.source = annotator

    @property
    def name(self):
        # re-caching keeps the name of the model that made the probabilities
        return self.source or type(self).__name__

    def annotate(self, image, class_names, *, img_path=None, gt_seg_map=None):
        image = self.check_image(image)
        class_names = self.check_class_names(class_names)
        if img_path is None:
            raise ValueError('PrecomputedAnnotator finds an image\'s entry by its file name: '
                             'pass img_path')
        cache = AnnotatorCache(self.cache_dir, num_classes=len(class_names),
                               class_names=class_names, annotator=self.source)
        h, w = image.shape[:2]
        entry = cache.load(image_stem(img_path), height=h, width=w, img_path=img_path)
        probs = topk_to_dense(entry.index, entry.prob, len(class_names))
        return self.check_output(probs, image, class_names)

    def __repr__(self):
        return f'{type(self).__name__}(cache_dir={self.cache_dir!r})'
