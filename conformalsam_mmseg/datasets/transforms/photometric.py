"""The colour half of UniMatch's strong view: ColorJitter and Gaussian blur, without torchvision.

UniMatch builds a strong view (``img_s1`` / ``img_s2``) from the weak crop with::

    ColorJitter(0.5, 0.5, 0.5, 0.25) p=0.8 -> RandomGrayscale p=0.2 -> blur p=0.5, sigma ~ U(0.1, 2)

on RGB PIL images. mmseg pipelines carry BGR ``uint8`` arrays (``LoadImageFromFile``), so
everything here reads channels in B, G, R order. The grayscale step is mmcv's
``RandomGrayscale``; configure it as torchvision's (luma weights in BGR order, 3 channels kept)::

    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.299))

Only ``results['img']`` changes: a photometric view must keep the geometry and the labels of
the crop it was made from.
"""
import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS

# ITU-R 601-2 luma (PIL's convert('L'), torchvision's rgb_to_grayscale) in B, G, R order.
_LUMA_BGR = np.array([0.114, 0.587, 0.299], np.float32)


def _check_bgr(img, name):
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'{name} expects a BGR uint8 image of shape (H, W, 3), got dtype '
                         f'{img.dtype} and shape {img.shape}')


def _gray(img):
    return img.astype(np.float32) @ _LUMA_BGR


def _blend(img, degenerate, factor):
    """``factor * img + (1 - factor) * degenerate``, clipped to [0, 255].

    The cast truncates, as PIL's ``Image.blend`` (which UniMatch's torchvision-on-PIL path
    calls) and torchvision's tensor ``_blend`` both do. factor 1 returns ``img`` exactly.
    """
    out = factor * img.astype(np.float32) + (1.0 - factor) * degenerate
    return np.clip(out, 0, 255).astype(np.uint8)


def adjust_brightness(img, factor):
    """Blend with black: factor 0 gives a black image, 1 the original."""
    return _blend(img, 0.0, factor)


def adjust_contrast(img, factor):
    """Blend with the mean of the grayscale image: factor 0 gives a uniform gray image."""
    return _blend(img, float(_gray(img).mean()), factor)


def adjust_saturation(img, factor):
    """Blend with the grayscale image: factor 0 gives its grayscale version."""
    return _blend(img, _gray(img)[..., None], factor)


def adjust_hue(img, shift):
    """Rotate the hue by ``shift`` turns (in [-0.5, 0.5]); 0.5 maps red to cyan.

    Computed in float HSV (OpenCV's float conversion: hue in degrees) and rounded back, so a
    zero shift returns the image unchanged. PIL quantises hue to 1/256 turn instead.
    """
    hsv = cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_BGR2HSV)
    hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * shift, 360.0)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    return np.clip(np.rint(bgr * 255.0), 0, 255).astype(np.uint8)


@TRANSFORMS.register_module()
class ColorJitter(BaseTransform):
    """torchvision's ``ColorJitter`` on BGR uint8 images, applied with probability ``prob``.

    Factors: brightness, contrast, saturation ~ U(max(0, 1 - x), 1 + x); hue shift ~ U(-h, h)
    in turns (h <= 0.5). The four adjustments run in a random order, as in torchvision; an
    argument of 0 disables its adjustment. Each step returns uint8, as torchvision on uint8 or
    PIL images. UniMatch: ``ColorJitter(0.5, 0.5, 0.5, 0.25, prob=0.8)``.

    Modified keys: img.
    """

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, prob=1.0):
        for name, value in (('brightness', brightness), ('contrast', contrast),
                            ('saturation', saturation)):
            if value < 0:
                raise ValueError(f'ColorJitter: {name} must be >= 0, got {value}')
        if not 0 <= hue <= 0.5:
            raise ValueError(f'ColorJitter: hue must be in [0, 0.5] (turns), got {hue}')
        if not 0 <= prob <= 1:
            raise ValueError(f'ColorJitter: prob must be in [0, 1], got {prob}')
        self.brightness, self.contrast = float(brightness), float(contrast)
        self.saturation, self.hue, self.prob = float(saturation), float(hue), float(prob)

    def _draw(self):
        """The order and the factors of one application (None = adjustment off)."""
        def factor(x):
            return np.random.uniform(max(0.0, 1.0 - x), 1.0 + x) if x > 0 else None

        order = np.random.permutation(4)
        factors = (factor(self.brightness), factor(self.contrast), factor(self.saturation),
                   np.random.uniform(-self.hue, self.hue) if self.hue > 0 else None)
        return order, factors

    def transform(self, results):
        if np.random.rand() >= self.prob:
            return results
        img = results['img']
        _check_bgr(img, 'ColorJitter')
        order, factors = self._draw()
        ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
        for i in order:
            if factors[i] is not None:
                img = ops[i](img, factors[i])
        results['img'] = img
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(brightness={self.brightness}, '
                f'contrast={self.contrast}, saturation={self.saturation}, hue={self.hue}, '
                f'prob={self.prob})')


@TRANSFORMS.register_module()
class GaussianBlur(BaseTransform):
    """Gaussian blur with sigma ~ U(sigma_range), applied with probability ``prob``.

    UniMatch blurs with PIL's ``ImageFilter.GaussianBlur(radius=sigma)``, whose radius is the
    standard deviation, and PIL repeats the edge pixels. Here: ``cv2.GaussianBlur`` with that
    sigma and replicated borders; the kernel covers +-3 sigma (``2 * ceil(3 sigma) + 1`` taps,
    99.7% of the Gaussian's mass) unless ``kernel_size`` (odd) fixes it.

    Modified keys: img.
    """

    def __init__(self, sigma_range=(0.1, 2.0), prob=0.5, kernel_size=None):
        low, high = sigma_range
        if not 0 < low <= high:
            raise ValueError(
                f'GaussianBlur: sigma_range must satisfy 0 < low <= high, got {sigma_range}')
        if not 0 <= prob <= 1:
            raise ValueError(f'GaussianBlur: prob must be in [0, 1], got {prob}')
        if kernel_size is not None and (kernel_size < 1 or kernel_size % 2 == 0):
            raise ValueError(f'GaussianBlur: kernel_size must be odd and >= 1, got {kernel_size}')
        self.sigma_range = (float(low), float(high))
        self.prob = float(prob)
        self.kernel_size = kernel_size

    def transform(self, results):
        if np.random.rand() >= self.prob:
            return results
        sigma = np.random.uniform(*self.sigma_range)
        k = self.kernel_size or 2 * int(np.ceil(3 * sigma)) + 1
        # a flip upstream leaves a negative-stride view, which OpenCV does not accept
        img = np.ascontiguousarray(results['img'])
        results['img'] = cv2.GaussianBlur(img, (k, k), sigmaX=sigma, sigmaY=sigma,
                                          borderType=cv2.BORDER_REPLICATE)
        return results

    def __repr__(self):
        return (f'{self.__class__.__name__}(sigma_range={self.sigma_range}, prob={self.prob}, '
                f'kernel_size={self.kernel_size})')
