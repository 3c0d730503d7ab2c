"""Combo's fused CPU kernel (combo_cpu.c) against its PyTorch path (SoftmaxForegroundSums, the reference), its
build and its fallbacks."""
import hashlib
import multiprocessing
import os
import shutil
import struct
import subprocess
import sys
import time

import pytest
import torch

from nnunet_losses.losses import ComboLoss
from nnunet_losses.losses._fast import combo_cpu
from nnunet_losses.losses.combo import SoftmaxForegroundSums, class_counts

HAS_COMPILER = shutil.which(os.environ.get("CC", "cc")) is not None


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """An empty kernel cache and no kernel loaded; afterwards the normal one is loaded again."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    combo_cpu.library.cache_clear()
    yield tmp_path / "nnunet_losses"
    combo_cpu.library.cache_clear()


def _logits(shape, scale, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * scale
    return x.round() if scale == 30.0 else x  # many ties at 30


def _case(shape, scale, with_mask, seed=0):
    x = _logits(shape, scale, seed)
    g = torch.Generator().manual_seed(seed + 1)
    labels = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=g)
    flat_x, flat_l = x.view(shape[0], shape[1], -1), labels.view(shape[0], -1)
    if flat_x.shape[2] >= 4 and shape[1] >= 3:
        # a unique top that is a false positive, 80 and 120 above the rest: the sum below it leaves float32's normal
        # range (80) or underflows (120), and ln(1 - p) = -80 / -120 comes from the runner-up
        for i, gap in ((0, 80.0), (1, 120.0)):
            flat_x[0, :, i] = torch.linspace(-1.0, 0.0, shape[1])
            flat_x[0, 1, i] = gap
            flat_l[0, i] = 2
        flat_x[0, :, 2] = 3.0  # every channel tied
        flat_x[0, :, 3] = torch.linspace(0.0, 1.0, shape[1]).round()  # two tied at the top
    mask = None if not with_mask else (torch.rand(labels.shape, generator=g) > 0.3).float()
    return x, labels, mask


def _sums_and_grad(function, x, labels, mask, upstream):
    x = x.clone().requires_grad_(True)
    out = function.apply(x, labels, mask)
    torch.autograd.backward(list(out[:4]), upstream)
    return [o.detach() for o in out], x.grad


needs_kernel = pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler: Combo uses its PyTorch path")


@needs_kernel
def test_the_kernel_builds_into_the_cache_and_is_used(fresh_build):
    assert combo_cpu.library() is not None
    assert len(list(fresh_build.glob("combo_cpu-*.so"))) == 1 and not list(fresh_build.glob("*.tmp*"))
    assert combo_cpu.applies(torch.zeros(1, 2, 3, 3))
    assert not combo_cpu.applies(torch.zeros(1, 2, 3, 3, dtype=torch.float64))
    assert combo_cpu.description() == "fused C kernel (combo_cpu.c)"


@needs_kernel
def test_an_unwritable_cache_falls_back_to_the_temporary_directory(monkeypatch, fresh_build, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(not_a_folder))
    monkeypatch.setattr(combo_cpu.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert combo_cpu.library() is not None
    assert len(list((tmp_path / "tmp").glob("nnunet_losses-*/combo_cpu-*.so"))) == 1


@needs_kernel
@pytest.mark.parametrize("with_mask", [False, True])
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
@pytest.mark.parametrize("shape", [(2, 4, 37, 29), (1, 2, 512, 1), (3, 6, 5, 7, 9), (2, 3, 1300, 1)])
def test_fused_sums_and_gradient_equal_the_pytorch_path(shape, scale, with_mask):
    """Blocks of 512 voxels with a partial last one, 2 to 6 channels, 2D and 3D, ties, gaps of 80 and 120 logits
    (the runner-up route), masks: the same sums and gradient for random upstream gradients."""
    x, labels, mask = _case(shape, scale, with_mask)
    g = torch.Generator().manual_seed(5)
    upstream = [torch.randn((), generator=g), torch.randn((), generator=g),
                torch.randn(shape[0], shape[1] - 1, generator=g), torch.randn(shape[0], shape[1] - 1, generator=g)]
    expected, expected_grad = _sums_and_grad(SoftmaxForegroundSums, x, labels, mask, upstream)
    fused, grad = _sums_and_grad(combo_cpu.FusedSoftmaxForegroundSums, x, labels, mask, upstream)
    expected.append(class_counts(labels, mask, shape[1])[:, 1:])
    assert len(fused) == 5 and not fused[4].requires_grad
    for got, want in zip(fused, expected):
        torch.testing.assert_close(got, want, rtol=2e-6, atol=1e-5)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-6 * expected_grad.abs().max().item())
    assert torch.isfinite(grad).all()


@needs_kernel
def test_the_kernel_uses_the_runner_up_for_a_far_top():
    """A false-positive top 120 above the rest: ln(1 - p) = ln(sum_{k != top} e^{x_k - top}) exactly, and the
    gradient of that term is bounded (p_top e^{x_j - r} / sum_{k != top} e^{x_k - r})."""
    x = torch.tensor([[[0.0], [120.0], [-1.0]]])
    labels = torch.tensor([[[2]]])
    (pos, neg, *_), grad = _sums_and_grad(combo_cpu.FusedSoftmaxForegroundSums, x, labels, None,
                                            [torch.tensor(0.0), torch.tensor(1.0), torch.zeros(1, 2),
                                             torch.zeros(1, 2)])
    x64 = x.double()
    expected = torch.logsumexp(x64[:, [0, 2]], 1) - torch.logsumexp(x64, 1)
    assert neg.item() == pytest.approx(expected.item(), rel=1e-6)
    assert pos.item() == pytest.approx((x64[0, 2] - torch.logsumexp(x64, 1)).item(), rel=1e-6)
    torch.testing.assert_close(grad[0, :, 0], torch.tensor([1 / (1 + torch.e ** -1), -1.0, torch.e ** -1 /
                                                            (1 + torch.e ** -1)]), rtol=1e-6, atol=1e-7)


@needs_kernel
def test_the_kernel_is_deterministic_for_a_thread_count(monkeypatch):
    x, labels, mask = _case((3, 4, 64, 48), 1.0, True)
    upstream = [torch.tensor(0.5), torch.tensor(-0.25), torch.ones(3, 3), torch.full((3, 3), 0.1)]
    for threads in (1, 2):
        monkeypatch.setattr(combo_cpu, "_threads", lambda: threads)
        first = _sums_and_grad(combo_cpu.FusedSoftmaxForegroundSums, x, labels, mask, upstream)
        again = _sums_and_grad(combo_cpu.FusedSoftmaxForegroundSums, x, labels, mask, upstream)
        assert all(torch.equal(a, b) for a, b in zip(first[0] + [first[1]], again[0] + [again[1]]))


@needs_kernel
def test_combo_loss_runs_the_kernel_on_the_cpu_and_the_pytorch_path_when_switched_off(monkeypatch):
    x, labels, _ = _case((2, 4, 20, 20), 1.0, False)
    calls = []
    real = combo_cpu.FusedSoftmaxForegroundSums.forward
    monkeypatch.setattr(combo_cpu.FusedSoftmaxForegroundSums, "forward",
                        staticmethod(lambda *a: calls.append(1) or real(*a)))
    fused = ComboLoss(0.5, 0.7)(x, labels)
    assert calls == [1]
    monkeypatch.setenv(combo_cpu.SWITCH, "f")
    assert not combo_cpu.applies(x) and combo_cpu.description() == "PyTorch ops (nnUNet_losses_fused=f)"
    assert ComboLoss(0.5, 0.7)(x, labels).item() == pytest.approx(fused.item(), rel=1e-6)
    assert calls == [1]


def test_without_a_compiler_combo_warns_once_and_uses_its_pytorch_path(monkeypatch, fresh_build):
    monkeypatch.setenv("CC", str(fresh_build / "no-such-compiler"))
    x, labels, _ = _case((2, 3, 8, 8), 1.0, False)
    with pytest.warns(UserWarning, match="fused CPU kernel is unavailable .*no-such-compiler"):
        assert not combo_cpu.applies(x)
    value = ComboLoss()(x, labels)  # no second warning: the failure is cached
    monkeypatch.setenv(combo_cpu.SWITCH, "f")
    assert value.item() == pytest.approx(ComboLoss()(x, labels).item(), rel=1e-7)
    assert combo_cpu.description() == "PyTorch ops (nnUNet_losses_fused=f)"
    monkeypatch.delenv(combo_cpu.SWITCH)
    assert combo_cpu.description() == "PyTorch ops (the C kernel did not build)"


def _loss_in_child(queue):
    x, labels, _ = _case((2, 4, 64, 64), 1.0, False)
    queue.put(ComboLoss()(x, labels).item())


@needs_kernel
def test_a_forked_child_computes_combo_after_the_parent_used_the_kernel():
    """GNU OpenMP hangs in a forked child whose parent ran a thread team; the child runs the kernel on one thread."""
    x, labels, _ = _case((2, 4, 64, 64), 1.0, False)
    expected = ComboLoss()(x, labels).item()  # the parent's team exists now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_loss_in_child, args=(queue,))
    child.start()
    child.join(timeout=120)
    assert not child.is_alive(), "the forked child hung"
    assert queue.get(timeout=5) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("function", [SoftmaxForegroundSums, combo_cpu.FusedSoftmaxForegroundSums])
def test_dice_sums_of_a_3d_batch_are_exact_to_float32(function):
    """2 x 128^3 voxels: the intersections and sums of p within 1e-6 (relative) of float64, on both paths (a float32
    scatter_add of the intersections over the whole batch drifts by 4e-4)."""
    if function is combo_cpu.FusedSoftmaxForegroundSums and not HAS_COMPILER:
        pytest.skip("no C compiler")
    x, labels, mask = _case((2, 3, 128, 128, 128), 2.0, True)
    with torch.no_grad():
        _, _, inter, sum_p = function.apply(x, labels, mask)[:4]
    p = torch.softmax(x.double(), 1) * mask.double()
    onehot = torch.zeros_like(p).scatter_(1, labels, 1.0)
    torch.testing.assert_close(inter.double(), (p * onehot).flatten(2).sum(2)[:, 1:], rtol=1e-6, atol=0)
    torch.testing.assert_close(sum_p.double(), p.flatten(2).sum(2)[:, 1:], rtol=1e-6, atol=0)


def test_label_counts_go_past_two_to_the_24():
    """A float32 scatter_add of ones stops at 2^24 = 16777216 (16777216 + 1 rounds back); the counts do not."""
    n = 2 ** 24 + 6
    labels = torch.ones(1, 1, n, 1, dtype=torch.int64)
    labels[0, 0, :2] = 0
    assert class_counts(labels, None, 2).tolist() == [[2.0, float(2 ** 24 + 4)]]


@needs_kernel
def test_the_kernel_converts_or_refuses_what_it_cannot_read():
    """int32 labels and a float64 mask are converted (the kernel reads int64 and float32); float64 logits and
    mismatched shapes are refused, before the C code could read past a buffer."""
    x, labels, mask = _case((2, 3, 9, 7), 1.0, True)
    expected = combo_cpu.FusedSoftmaxForegroundSums.apply(x, labels, mask)
    converted = combo_cpu.FusedSoftmaxForegroundSums.apply(x, labels.int(), mask.double())
    assert all(torch.equal(a, b) for a, b in zip(expected, converted))
    with pytest.raises(TypeError, match="float32 CPU logits"):
        combo_cpu.FusedSoftmaxForegroundSums.apply(x.double(), labels, mask)
    with pytest.raises(ValueError, match="must have"):
        combo_cpu.FusedSoftmaxForegroundSums.apply(x, labels[:, :, :4], mask)


# --------------------------------------------------------------------------------- the cache, the switch, faults
_COMBO_SCRIPT = """
import os, sys, torch
from nnunet_losses.losses import ComboLoss
from nnunet_losses.losses._fast import combo_cpu
g = torch.Generator().manual_seed(0)
x = torch.randn(2, 3, 40, 40, generator=g)
labels = torch.randint(0, 3, (2, 1, 40, 40), generator=g)
fused = combo_cpu.applies(x)
value = ComboLoss()(x, labels).item()
os.environ[combo_cpu.SWITCH] = "f"
print(fused, value, ComboLoss()(x, labels).item())
"""


def _combo_in_process(python, cache, expect_kernel=True):
    """Combo on the CPU in a new process with the kernel cache in ``cache`` (a crash stays in that process)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env.pop(combo_cpu.SWITCH, None)
    proc = python([sys.executable, "-W", "error::UserWarning", "-c", _COMBO_SCRIPT], env=env, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    fused, value, reference = proc.stdout.split()
    assert fused == str(expect_kernel)
    assert float(value) == pytest.approx(float(reference), rel=1e-5)
    return proc


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory, run_bare_python):
    """A kernel cache as a first Combo run leaves it (built in another process)."""
    cache = tmp_path_factory.mktemp("built")
    _combo_in_process(run_bare_python, cache)
    return cache / "nnunet_losses"


def _copy_of(built_cache, tmp_path):
    shutil.copytree(built_cache, tmp_path / "nnunet_losses")
    os.chmod(tmp_path / "nnunet_losses", 0o700)
    (kernel,) = (tmp_path / "nnunet_losses").glob("combo_cpu-*.so")
    return kernel


def _record_matches(kernel):
    record = kernel.with_name(kernel.name + ".sha256")
    return record.read_text().split()[0] == hashlib.sha256(kernel.read_bytes()).hexdigest()


def _text_section(data: bytes):
    """(offset, size) of an ELF64 file's .text section."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = sections[shstrndx][4]
    for name, _, _, _, offset, size in sections:
        if data[names + name:data.index(b"\0", names + name)] == b".text":
            return offset, size
    raise AssertionError("no .text section")


@needs_kernel
def test_the_build_records_the_kernels_hash(built_cache):
    (kernel,) = built_cache.glob("combo_cpu-*.so")
    assert _record_matches(kernel)
    assert os.stat(built_cache).st_mode & 0o777 == 0o700


@needs_kernel
def test_a_truncated_kernel_is_rebuilt(built_cache, tmp_path, run_bare_python):
    """A kernel cut short (a full disk, a killed copy) crashed every Combo run with a bus error."""
    kernel = _copy_of(built_cache, tmp_path)
    data = kernel.read_bytes()
    kernel.write_bytes(data[:len(data) // 2])
    _combo_in_process(run_bare_python, tmp_path)
    assert kernel.read_bytes() == data and _record_matches(kernel)


@needs_kernel
def test_a_kernel_with_changed_code_is_rebuilt(built_cache, tmp_path, run_bare_python):
    """Flipped bytes in the kernel's code crashed Combo (or gave wrong sums): the record catches them."""
    kernel = _copy_of(built_cache, tmp_path)
    data = kernel.read_bytes()
    offset, size = _text_section(data)
    kernel.write_bytes(data[:offset] + bytes(b ^ 0xFF for b in data[offset:offset + size]) + data[offset + size:])
    _combo_in_process(run_bare_python, tmp_path)
    assert kernel.read_bytes() == data and _record_matches(kernel)


@needs_kernel
def test_a_kernel_without_its_record_is_rebuilt(built_cache, tmp_path, run_bare_python):
    kernel = _copy_of(built_cache, tmp_path)
    record = kernel.with_name(kernel.name + ".sha256")
    record.unlink()
    kernel.write_bytes(b"\0" * 4096)  # not an ELF file: loading it would fail
    _combo_in_process(run_bare_python, tmp_path)
    assert record.is_file() and _record_matches(kernel)


@needs_kernel
def test_a_kernel_that_cannot_be_rebuilt_warns_and_uses_the_pytorch_path(monkeypatch, fresh_build):
    monkeypatch.setattr(combo_cpu, "FLAGS", (*combo_cpu.FLAGS, "-no-such-flag"))  # the build fails
    fresh_build.mkdir(mode=0o700)
    kernel = fresh_build / (combo_cpu._kernel_name(os.environ.get("CC", "cc")) + ".so")
    kernel.write_bytes(b"\0" * 4096)
    with pytest.warns(UserWarning) as caught:
        assert combo_cpu.library() is None
    (message,) = [str(w.message) for w in caught]
    assert "\n" not in message and "nnUNet_losses_fused=f" in message and str(fresh_build) in message


@needs_kernel
def test_a_library_without_the_kernels_symbols_warns_and_uses_the_pytorch_path(fresh_build, tmp_path):
    fresh_build.mkdir(mode=0o700)
    source = tmp_path / "other.c"
    source.write_text("int other(void) { return 0; }\n")
    kernel = fresh_build / (combo_cpu._kernel_name(os.environ.get("CC", "cc")) + ".so")
    subprocess.run([os.environ.get("CC", "cc"), "-shared", "-fPIC", str(source), "-o", str(kernel)], check=True)
    kernel.with_name(kernel.name + ".sha256").write_text(hashlib.sha256(kernel.read_bytes()).hexdigest() + "\n")
    with pytest.warns(UserWarning, match="combo_forward") as caught:
        assert combo_cpu.library() is None
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    assert "nnUNet_losses_fused=f" in str(caught[0].message)
    assert not combo_cpu.applies(torch.zeros(1, 2, 3, 3))


@needs_kernel
@pytest.mark.parametrize("problem", ["mode 0777", "mode 0775", "another owner"])
def test_a_cache_folder_others_could_write_is_not_used(monkeypatch, fresh_build, tmp_path, problem):
    """A kernel another user could plant would run as this user: such a folder is refused, the kernel is built
    in a private folder of this process instead."""
    fresh_build.mkdir()
    planted = fresh_build / (combo_cpu._kernel_name(os.environ.get("CC", "cc")) + ".so")
    planted.write_bytes(b"planted")
    if problem == "another owner":
        os.chmod(fresh_build, 0o700)
        real_getuid = os.getuid
        monkeypatch.setattr(combo_cpu.os, "getuid", lambda: real_getuid() + 1)
    else:
        os.chmod(fresh_build, int(problem.split()[1], 8))
    monkeypatch.setattr(combo_cpu.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with pytest.warns(UserWarning, match=f"{fresh_build}.*(other users|belongs to)"):
        assert combo_cpu.library() is not None
    assert planted.read_bytes() == b"planted" and sorted(p.name for p in fresh_build.iterdir()) == [planted.name]
    (private,) = (tmp_path / "tmp").glob("nnunet_losses-*")
    assert os.stat(private).st_mode & 0o777 == 0o700 and len(list(private.glob("combo_cpu-*.so"))) == 1


@needs_kernel
def test_a_folder_planted_at_the_old_temporary_path_is_not_used(monkeypatch, fresh_build, tmp_path):
    """Where the user's cache cannot be written, the kernel goes to a new private folder, never to a name another
    user could create first (``/tmp/nnunet_losses-<uid>``)."""
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(not_a_folder))
    monkeypatch.setattr(combo_cpu.tempfile, "tempdir", str(tmp_path / "tmp"))
    planted = tmp_path / "tmp" / f"nnunet_losses-{os.getuid()}"
    planted.mkdir(parents=True)
    os.chmod(planted, 0o777)
    assert combo_cpu.library() is not None
    assert list(planted.iterdir()) == []
    (private,) = [p for p in (tmp_path / "tmp").glob("nnunet_losses-*") if p != planted]
    assert os.stat(private).st_mode & 0o777 == 0o700


@needs_kernel
def test_a_loose_cache_folder_of_this_users_is_made_private(fresh_build):
    """A cache folder of this user's that only they can write (0755, as mkdir made it) is kept and made 0700."""
    fresh_build.mkdir()
    os.chmod(fresh_build, 0o755)
    assert combo_cpu.library() is not None
    assert os.stat(fresh_build).st_mode & 0o777 == 0o700 and len(list(fresh_build.glob("combo_cpu-*.so"))) == 1


@needs_kernel
def test_leftovers_of_killed_builds_are_removed(fresh_build):
    """A build killed mid-way leaves its temporary file; the next build removes those older than a build can take
    and leaves younger ones (a build running in another process)."""
    fresh_build.mkdir(mode=0o700)
    name = combo_cpu._kernel_name(os.environ.get("CC", "cc"))
    old = [fresh_build / "tmpab12cd.so", fresh_build / f"{name}.so.tmpxy", fresh_build / f"{name}.so.sha256.tmpz"]
    young = fresh_build / f"{name}.so.tmpnew"
    for path in old + [young]:
        path.write_bytes(b"")
    hour_ago = time.time() - 3600
    for path in old:
        os.utime(path, (hour_ago, hour_ago))
    assert combo_cpu.library() is not None
    assert [p for p in old if p.exists()] == [] and young.exists()
    assert sorted(p.name for p in fresh_build.glob("*.so")) == [f"{name}.so"]


@needs_kernel
def test_a_killed_build_leaves_no_kernel_and_the_next_run_builds_it(built_cache, tmp_path, run_bare_python):
    """The compiler writes a temporary file that is renamed when complete: a kill leaves no kernel under the final
    name, only a temporary file, and the next run builds the kernel."""
    kernel = _copy_of(built_cache, tmp_path)
    kernel.unlink()
    leftover = kernel.with_name(kernel.name + ".tmp1234")
    leftover.write_bytes(b"")
    _combo_in_process(run_bare_python, tmp_path)
    assert _record_matches(kernel)


@pytest.mark.parametrize("value", ["0", "false", "no", "off", "f", "n", "NO", "Off", "False", " F "])
def test_each_spelling_of_false_switches_the_kernel_off(monkeypatch, value):
    monkeypatch.setenv(combo_cpu.SWITCH, value)
    assert not combo_cpu.enabled() and not combo_cpu.applies(torch.zeros(1, 2, 3, 3))
    assert combo_cpu.description() == f"PyTorch ops (nnUNet_losses_fused={value.strip()})"


@pytest.mark.parametrize("value", ["1", "true", "yes", "on", "t", "y", "TRUE", "Yes", ""])
def test_each_spelling_of_true_leaves_the_kernel_on(monkeypatch, value):
    monkeypatch.setenv(combo_cpu.SWITCH, value)
    assert combo_cpu.enabled()


@pytest.mark.parametrize("value", ["maybe", "2", "fused"])
def test_an_unknown_switch_value_is_an_error(monkeypatch, value):
    monkeypatch.setenv(combo_cpu.SWITCH, value)
    x, labels, _ = _case((1, 3, 4, 4), 1.0, False)
    for call in (combo_cpu.enabled, combo_cpu.description, lambda: ComboLoss()(x, labels)):
        with pytest.raises(ValueError) as err:
            call()
        message = str(err.value)
        assert "\n" not in message and f"nnUNet_losses_fused={value!r}" in message
        assert all(word in message for word in ("0", "false", "no", "off", "1", "true", "yes", "on"))


def test_the_kernel_is_not_loaded_for_logits_on_another_device(monkeypatch):
    """Logits on a GPU (here the meta device, which has no data) never load the kernel: no build, no library in a
    process whose loss runs on CUDA."""
    monkeypatch.setattr(combo_cpu, "library", lambda: pytest.fail("the kernel was loaded"))
    assert not combo_cpu.applies(torch.zeros(1, 2, 3, 3, device="meta"))
