"""Small fake trees of public datasets' downloads, as their converters (nnunet_losses.convert) read them."""
import os

import numpy as np
import SimpleITK as sitk

OBLIQUE = tuple(np.array([[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]]).ravel())  # a rotation about z


def write(array, path, spacing=(1.4, 1.4, 10.0), origin=(-3.0, 12.5, 40.0), direction=OBLIQUE):
    """``array`` (z, y, x) as an image file, with an anisotropic spacing and an oblique direction by default."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))


def blocks(shape, values):
    """Labels with one block per value, side by side."""
    labels = np.zeros(shape, np.uint8)
    for i, value in enumerate(values):
        labels[1:-1, 2 + 4 * i:5 + 4 * i, 3:12] = value
    return labels


def write_fake_acdc(root, training=(1, 2, 3), testing=(101,), testing_gt=True):
    """ACDC's layout: patient folders with two segmented frames (01, 12), the 4D cine and Info.cfg."""
    rng = np.random.default_rng(0)
    for split, patients in (("training", training), ("testing", testing)):
        for p in patients:
            folder = root / split / f"patient{p:03d}"
            for frame in (1, 12):
                case = f"patient{p:03d}_frame{frame:02d}"
                write(rng.normal(size=(8, 20, 20)).astype(np.float32), folder / f"{case}.nii.gz", origin=(p, 0, 0))
                if split == "training" or testing_gt:
                    write(blocks((8, 20, 20), (1, 2, 3)), folder / f"{case}_gt.nii.gz", origin=(p, 0, 0))
            write(np.zeros((2, 8, 20, 20), np.float32), folder / f"patient{p:03d}_4d.nii.gz")
            (folder / "Info.cfg").write_text("ED: 1\nES: 12\nGroup: NOR\n")
    return root
