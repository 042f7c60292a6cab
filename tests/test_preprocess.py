"""preprocess_image: real-world digit images into MNIST form, checked on files written with PIL."""

import tracemalloc

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_estimators.data import (
    EmptyImageError,
    MNISTFormatError,
    load_mnist,
    preprocess_image,
    read_images,
)

# Strokes in unit-box coordinates: a "7" is heavy at the top and right, so its centre of mass and
# the centre of its bounding box differ; a "0" drawn as a tall ellipse shows the aspect ratio.
SHAPES = {
    "seven": [(0.0, 0.0), (1.0, 0.0), (0.3, 1.0)],
    "one": [(0.5, 0.0), (0.5, 1.0)],
}


def draw(shape="seven", size=(200, 200), box=(50, 40, 150, 170), stroke=12, *, dark_ink=True,
         transparent=False, supersample=4):
    """A digit drawn like a pen or a browser canvas: anti-aliased edges (drawn ``supersample``
    times larger, then box-averaged down). Returns an L image, or RGBA black-on-transparent."""
    s = supersample
    big = (size[0] * s, size[1] * s)
    if transparent:
        img, ink = Image.new("RGBA", big, (0, 0, 0, 0)), (0, 0, 0, 255)
    else:
        img, ink = Image.new("L", big, 255 if dark_ink else 0), 0 if dark_ink else 255
    pen = ImageDraw.Draw(img)
    left, top, right, bottom = (v * s for v in box)
    if shape == "zero":
        pen.ellipse((left, top, right, bottom), outline=ink, width=stroke * s)
    else:
        points = [(left + x * (right - left), top + y * (bottom - top)) for x, y in SHAPES[shape]]
        pen.line(points, fill=ink, width=stroke * s, joint="curve")
    return img.resize(size, Image.Resampling.BOX) if s > 1 else img


def frame_of(image, tmp_path=None, name="digit.png", **save):
    """preprocess_image on ``image`` (saved to a file first when ``tmp_path`` is given)."""
    if tmp_path is not None:
        image.save(tmp_path / name, **save)
        image = tmp_path / name
    out = preprocess_image(image)
    assert out.shape == (784,) and out.dtype == np.uint8
    return out.reshape(28, 28).astype(int)


def centre_of_mass(frame):
    frame = np.asarray(frame, dtype=float)
    idx = np.arange(frame.shape[0])
    return frame.sum(1) @ idx / frame.sum(), frame.sum(0) @ idx / frame.sum()


def ink_box(frame):
    rows, cols = np.nonzero(frame.any(1))[0], np.nonzero(frame.any(0))[0]
    return rows[0], rows[-1], cols[0], cols[-1]


# --------------------------------------------------------------------------- MNIST's geometry


def test_mnist_own_digits_have_mass_at_pixel_14_and_fit_20x20(full_mnist_dir):
    """Measured on MNIST itself: every digit's centre of mass lies within half a pixel of
    (14, 14) in index coordinates (pixel centres 0..27; only half of them are within half a pixel
    of the geometric middle 13.5), so MNIST shifted by whole pixels to put it at pixel 14. The
    nonzero ink spans at most 20 pixels: the 20x20 box, anti-aliased edges included."""
    X, _ = load_mnist("train", data_home=full_mnist_dir, as_images=True)
    w = X[:20000].astype(np.float64)
    idx = np.arange(28)
    mass = w.sum(axis=(1, 2))
    cy, cx = (w.sum(axis=2) @ idx) / mass, (w.sum(axis=1) @ idx) / mass
    assert (np.abs(cy - 14) <= 0.5).mean() > 0.999 and (np.abs(cx - 14) <= 0.5).mean() > 0.999
    assert (np.abs(cy - 13.5) <= 0.5).mean() < 0.6
    rows, cols = X[:20000].any(axis=2), X[:20000].any(axis=1)
    height = 28 - rows.argmax(1) - rows[:, ::-1].argmax(1)
    width = 28 - cols.argmax(1) - cols[:, ::-1].argmax(1)
    assert np.maximum(height, width).max() == 20


@pytest.mark.parametrize("box", [(10, 10, 70, 90), (120, 100, 190, 190), (60, 5, 110, 60),
                                 (20, 130, 90, 195)])
def test_off_centre_digits_get_their_centre_of_mass_at_14_14(tmp_path, box):
    frame = frame_of(draw("seven", box=box, stroke=8), tmp_path)
    cy, cx = centre_of_mass(frame)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5, (cy, cx)
    top, bottom, left, right = ink_box(frame)
    assert max(bottom - top, right - left) + 1 == 20  # whole: nothing cut at the edge


def test_a_seven_is_mass_centred_not_box_centred(tmp_path):
    frame = frame_of(draw("seven"), tmp_path)
    top, bottom, _, _ = ink_box(frame)
    box_cy = (top + bottom) / 2
    cy, cx = centre_of_mass(frame)
    # the heavy top bar pulls the mass up: the box centre sits more than a pixel lower
    assert box_cy - cy > 1.0, (box_cy, cy)
    assert abs(cy - 14) <= 0.5 and abs(box_cy - 14) > 1.0


@pytest.mark.parametrize("shape, box, aspect", [
    ("zero", (40, 20, 100, 140), 0.5),  # a tall ellipse, 60 x 120
    ("zero", (10, 60, 190, 150), 2.0),  # a wide one, 180 x 90
    ("one", (90, 10, 110, 190), None),  # a thin stroke, 180 tall
])
def test_ink_fits_20x20_and_keeps_its_aspect_ratio(tmp_path, shape, box, aspect):
    frame = frame_of(draw(shape, box=box, stroke=10), tmp_path)
    top, bottom, left, right = ink_box(frame)
    height, width = bottom - top + 1, right - left + 1
    assert max(height, width) == 20
    if aspect is not None:
        # ink box = drawn box + stroke; +-1 px of anti-aliasing
        ink_w, ink_h = box[2] - box[0] + 10, box[3] - box[1] + 10
        assert abs(width - 20 * min(1, ink_w / ink_h)) <= 1.5
        assert abs(height - 20 * min(1, ink_h / ink_w)) <= 1.5
    else:
        assert width <= 4  # a "1" stays a thin upright stroke, not a stretched block


def test_strokes_are_saturated_like_mnist(tmp_path):
    frame = frame_of(draw("seven", stroke=16), tmp_path)
    assert frame.max() == 255 and (frame > 200).sum() >= 15


# --------------------------------------------------------------------------- real inputs


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_canvas_export_equals_the_drawing_on_white(tmp_path, mode):
    """A browser canvas exports black strokes on a transparent background; convert("L") alone
    turns it black on black, and the digit vanished."""
    canvas = draw("seven", transparent=True)
    if mode == "P":  # palette with a transparent index, as GIF and small PNG writers produce
        alpha = np.asarray(canvas.getchannel("A"))
        canvas = Image.fromarray(np.where(alpha > 127, 1, 0).astype(np.uint8), mode="P")
        canvas.putpalette([0, 0, 0, 0, 0, 0])  # the transparent colour is black too
        canvas.info["transparency"] = 0
        opaque = Image.fromarray(np.where(alpha > 127, 0, 255).astype(np.uint8))
    else:
        canvas = canvas.convert(mode)
        opaque = draw("seven")
    assert np.asarray(canvas.convert("L")).max() == 0  # the trap: all black
    canvas.save(tmp_path / "canvas.png")
    with Image.open(tmp_path / "canvas.png") as saved:
        assert saved.mode == mode
    frame = frame_of(tmp_path / "canvas.png")
    assert frame.max() == 255 and (frame > 0).sum() > 40  # the digit is there
    np.testing.assert_allclose(frame, frame_of(opaque, tmp_path, "opaque.png"), atol=2)


def test_dark_on_light_and_light_on_dark_give_the_same_frame(tmp_path):
    dark = frame_of(draw("seven", dark_ink=True), tmp_path, "dark.png")
    light = frame_of(draw("seven", dark_ink=False), tmp_path, "light.png")
    np.testing.assert_allclose(dark, light, atol=1)
    assert dark[0].max() == 0 and dark.max() == 255  # white ink on black, like MNIST


def test_files_images_and_arrays_agree(tmp_path):
    img = draw("seven")
    from_file = frame_of(img, tmp_path)
    arr = np.asarray(img)
    np.testing.assert_array_equal(from_file, frame_of(img))
    np.testing.assert_array_equal(from_file, frame_of(arr))
    np.testing.assert_allclose(from_file, frame_of(arr / 255.0), atol=1)  # float in [0, 1]
    np.testing.assert_allclose(from_file, frame_of(np.dstack([arr] * 3)), atol=1)  # RGB
    with pytest.raises(MNISTFormatError, match=r"shape \(2, 3, 4, 5\)"):
        preprocess_image(np.zeros((2, 3, 4, 5), np.uint8))


@pytest.mark.parametrize("case", ["white", "transparent", "gray", "faint", "speck"])
def test_an_image_without_ink_is_a_clear_error_naming_the_file(tmp_path, case):
    if case == "transparent":
        img = Image.new("RGBA", (120, 120), (0, 0, 0, 0))
    else:
        paper = {"white": 255, "gray": 128, "faint": 240, "speck": 255}[case]
        img = Image.new("L", (120, 120), paper)
    if case == "faint":  # a mark 15/255 darker than the paper: a shadow, not ink
        ImageDraw.Draw(img).line([(30, 30), (90, 90)], fill=225, width=6)
    if case == "speck":  # dust: one dark pixel would be blown up into a 20x20 blob
        img.putpixel((60, 60), 0)
    img.save(tmp_path / f"{case}.png")
    with pytest.raises(EmptyImageError, match=rf"{case}\.png: no digit found"):
        preprocess_image(tmp_path / f"{case}.png")
    with pytest.raises(EmptyImageError, match=rf"{case}\.png: no digit found"):
        read_images([tmp_path / f"{case}.png"])
    assert issubclass(EmptyImageError, ValueError)


def test_a_6000px_image_takes_little_memory_and_matches_a_600px_one(tmp_path):
    big = draw("seven", size=(6000, 6000), box=(1500, 1200, 4500, 5100), stroke=360,
               supersample=1)
    big.save(tmp_path / "big.png", compress_level=1)
    del big
    small = draw("seven", size=(600, 600), box=(150, 120, 450, 510), stroke=36)
    tracemalloc.start()
    try:
        frame = frame_of(tmp_path / "big.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # numpy's float copies are traced (PIL's own decode buffer, 36 MB here, is not): all of them
    # are of the image box-averaged to 512 px, never of the 6000 px one (that would be 144 MB)
    assert peak < 40e6, f"{peak / 1e6:.0f} MB"
    expected = frame_of(small)
    assert np.abs(frame - expected).mean() < 3
    assert np.abs(frame - expected).max() < 40


def test_a_6000px_jpeg_is_decoded_at_reduced_size(tmp_path):
    big = draw("seven", size=(6000, 6000), box=(1500, 1200, 4500, 5100), stroke=360,
               supersample=1)
    big.save(tmp_path / "big.jpg", quality=90)
    del big
    frame = frame_of(tmp_path / "big.jpg")
    expected = frame_of(draw("seven", size=(600, 600), box=(150, 120, 450, 510), stroke=36))
    assert np.abs(frame - expected).mean() < 3


def test_jpeg_at_quality_30_is_close_to_the_png(tmp_path):
    img = draw("seven", size=(300, 300), box=(80, 60, 230, 250), stroke=14).convert("RGB")
    png = frame_of(img, tmp_path, "digit.png")
    jpeg = frame_of(img, tmp_path, "digit.jpg", quality=30)
    assert np.abs(png - jpeg).mean() < 4
    # speckle around the strokes does not become ink: nothing where the PNG has none
    assert jpeg[png == 0].max() < 40


def test_exif_orientation_of_a_phone_photo_is_applied(tmp_path):
    img = draw("seven").convert("RGB")
    upright = frame_of(img, tmp_path, "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view": the pixels are stored turned left
    turned = frame_of(img.transpose(Image.Transpose.ROTATE_90), tmp_path, "turned.jpg",
                      quality=95, exif=exif)
    assert np.abs(upright - turned).mean() < 4


# --------------------------------------------------------------------------- MNIST round trip


@pytest.mark.full_mnist
def test_mnist_digits_drawn_as_images_keep_a_models_accuracy(full_mnist_dir):
    """MNIST's test digits, printed back as 112 px dark-on-white images and read again, are
    classified as well as the raw arrays: the preprocessing reproduces MNIST's own."""
    from mnist_estimators import SoftmaxRegressionClassifier

    X, y = load_mnist("train", data_home=full_mnist_dir)
    X_test, y_test = load_mnist("test", data_home=full_mnist_dir)
    X_test, y_test = X_test[:1000], y_test[:1000]
    model = SoftmaxRegressionClassifier(max_epochs=3, random_state=0, tracking=False)
    model.fit(X[:20000], y[:20000])
    images = [Image.fromarray(255 - x.reshape(28, 28)).resize((112, 112), Image.Resampling.BILINEAR)
              for x in X_test]
    X_again = np.stack([preprocess_image(img) for img in images])
    raw, again = model.score(X_test, y_test), model.score(X_again, y_test)
    assert raw > 0.85 and again > raw - 0.03, (raw, again)
