"""The block cache of the CPU operators' large outputs (ashlib/ops/native/pool.c, blocks.py).

What it must do: hand a freed block out again (its pages still mapped, so no page faults), never
hand one block to two live tensors (views keep theirs), keep at most its limit, give everything
back when asked, work across threads and in a forked child, and give outputs that behave like any
other tensor (in-place ops, saving, shared memory, autograd)."""
import io
import multiprocessing as mp
import os
import subprocess
import sys
import threading

import pytest
import torch

import ashlib.functional as AF
from ashlib.ops import native
from ashlib.ops.native import blocks

pytestmark = pytest.mark.skipif(not blocks.enabled(), reason="no native kernels (the block cache is theirs)")

MB = 1 << 20


def _faults() -> int:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _mapped(address: int) -> bool:
    """Whether ``address`` lies in one of this process's memory mappings."""
    with open("/proc/self/maps") as fh:
        for line in fh:
            lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
            if lo <= address < hi:
                return True
    return False


@pytest.fixture
def limit():
    """Restore the default limit (and an empty cache) after a test that changes it."""
    yield blocks.set_limit
    blocks.set_limit(1024)
    blocks.release()


def test_the_grain_is_the_c_files():
    lib = native.library()
    for n in (1, blocks.GRAIN - 1, blocks.GRAIN, blocks.GRAIN + 1, 3 * MB + 68):
        assert lib.ashlib_pool_size(n) == (n + blocks.GRAIN - 1) // blocks.GRAIN * blocks.GRAIN
    t = blocks.empty((3 * MB // 4 + 17,), torch.float32)
    assert t.untyped_storage().nbytes() == 3 * MB + 68  # the tensor's own size; the block is 3 MiB + 64 kB


def test_a_freed_block_comes_back_with_its_pages_mapped():
    blocks.release()
    shape = (3 * MB // 4 + 17,)  # 3 MiB + 68 bytes: rounded up to the cache's 64 kB grain
    a = blocks.empty(shape, torch.float32)
    a.fill_(1.0)  # the first touch of each page faults it in
    address = a.data_ptr()
    del a
    assert blocks.cached_bytes() == 3 * MB + (1 << 16)
    f0 = _faults()
    b = blocks.empty(shape, torch.float32)
    b.fill_(2.0)
    faults = _faults() - f0
    assert b.data_ptr() == address
    assert faults < 16  # 769 pages written; a fresh mapping faults on each of them
    assert blocks.cached_bytes() == 0


def test_a_block_up_to_a_quarter_larger_serves_a_smaller_request():
    blocks.release()
    big = blocks.empty((MB,), torch.float32)  # 4 MiB
    address = big.data_ptr()
    del big
    small = blocks.empty((7 * MB // 8,), torch.float32)  # 3.5 MiB: 4 MiB is within a quarter
    assert small.data_ptr() == address
    del small
    assert blocks.cached_bytes() == 4 * MB  # given back at the block's own size
    smaller = blocks.empty((3 * MB // 4,), torch.float32)  # 3 MiB: 4 MiB is a third larger
    assert smaller.data_ptr() != address and blocks.cached_bytes() == 4 * MB


def test_small_requests_and_other_devices_take_torch_empty():
    t = blocks.empty((blocks.MIN_BYTES // 4 - 1,), torch.float32)  # 4 bytes under MIN_BYTES
    assert t.untyped_storage().resizable()  # torch's own allocator
    assert blocks.empty((blocks.MIN_BYTES // 4,), torch.float32).untyped_storage().resizable() is False
    meta = blocks.empty_on((MB,), torch.float32, torch.device("meta"))
    assert meta.device.type == "meta"


def test_views_keep_their_block_and_no_block_serves_two_tensors():
    base = blocks.empty((4, MB // 4), torch.float32)
    base.fill_(1.0)
    view = base[1]
    address = base.data_ptr()
    del base
    fresh = blocks.empty((4, MB // 4), torch.float32)  # the view still holds the first block
    fresh.fill_(2.0)
    assert fresh.data_ptr() != address
    assert bool((view == 1.0).all())
    del view  # now the first block is free and comes back
    again = blocks.empty((4, MB // 4), torch.float32)
    assert again.data_ptr() == address


def test_dense_strides_are_kept():
    shape, stride = (2, 64, 32, 32), (65536, 1, 2048, 64)  # channels_last
    t = blocks.empty(shape, torch.float32, stride)
    assert t.stride() == stride and t.is_contiguous(memory_format=torch.channels_last)
    assert t.untyped_storage().nbytes() == 2 * 64 * 32 * 32 * 4


def test_the_limit_keeps_the_newest_blocks_and_release_gives_all_back(limit):
    blocks.release()
    limit(8)  # 8 MiB: two 4 MiB blocks
    a, b, c = (blocks.empty((MB,), torch.float32) for _ in range(3))
    pa, pb, pc = a.data_ptr(), b.data_ptr(), c.data_ptr()
    del a, b, c  # freed in this order: a is the oldest, and goes when c comes
    assert blocks.cached_bytes() == 8 * MB
    d, e, f = (blocks.empty((MB,), torch.float32) for _ in range(3))
    assert (d.data_ptr(), e.data_ptr()) == (pc, pb)  # the most recently freed first
    assert f.data_ptr() not in (pb, pc)  # a new mapping (it may land where a was)
    del d, e, f
    assert blocks.release() == 8 * MB
    assert not _mapped(pb) and not _mapped(pc)  # really unmapped, not only uncounted
    assert blocks.cached_bytes() == 0
    limit(0)  # no cache: freed blocks are unmapped at once
    t = blocks.empty((MB,), torch.float32)
    del t
    assert blocks.cached_bytes() == 0
    with pytest.raises(ValueError, match=">= 0"):
        blocks.set_limit(-1)


def test_operator_outputs_come_from_the_cache_and_behave_like_tensors(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(4, 64, 32, 32, requires_grad=True)  # 1 MiB per output
    alpha = torch.full((1, 64, 1, 1), 0.7, requires_grad=True)
    for make in (lambda: AF.ash(x, 0.0, 1.0), lambda: AF.adaptive_gumbel(x, alpha),
                 lambda: AF.ash(x.to(memory_format=torch.channels_last), 0.5, 2.0)):
        y = make()
        assert y._base is None and y.shape == x.shape
        assert not y.untyped_storage().resizable()  # a block of the cache
        ref = y.detach().clone()
        y.sum().backward()
        assert torch.isfinite(x.grad).all()
        y2 = y.detach()
        y2.mul_(2.0).sub_(ref)  # in-place ops
        assert torch.equal(y2, ref)
        buf = io.BytesIO()
        torch.save(y2, buf)
        buf.seek(0)
        assert torch.equal(torch.load(buf, weights_only=True), ref)
        shared = y2.clone().share_memory_()
        assert shared.is_shared() and torch.equal(shared, ref)
        moved = y2.share_memory_()  # the block's own storage moved to shared memory
        assert moved.is_shared() and torch.equal(moved, ref)
        assert torch.equal(torch.from_numpy(y2.numpy()), ref)
        x.grad = None


def test_threads_never_get_the_same_live_block():
    errors = []

    def work(tid):
        for i in range(40):
            t = blocks.empty((MB // 4 + 1024 * (i % 3),), torch.float32)
            value = float(tid * 1000 + i)
            t.fill_(value)
            os.sched_yield()
            if not bool((t == value).all()):
                errors.append((tid, i))
            del t

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


POOL_STRESS = r"""
#include "pool.c"
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
/* Threads take and give back blocks of a few sizes, each writing its own mark into every block it
 * holds and checking it is still there (two holders of one block would overwrite each other);
 * meanwhile the main thread forks, and each child checks that its copy of the free list is
 * consistent: its sizes add up to the byte count and no block is listed twice. */
static volatile int stop = 0;
static volatile long clashes = 0;
static void *churn(void *arg) {
    const long id = (long)arg;
    const size_t sizes[3] = {1 << 16, 3 << 16, 1 << 20};
    void *held[64];
    size_t got[64];
    for (long it = 0; !stop; ++it) {
        int n = 1 + (int)((it * 7 + id) % 64);
        for (int i = 0; i < n; ++i) {
            held[i] = ashlib_pool_get(sizes[(i + it + id) % 3], &got[i]);
            ((volatile long *)held[i])[0] = id * 1000003 + i;
        }
        for (int i = 0; i < n; ++i)
            if (((volatile long *)held[i])[0] != id * 1000003 + i) ++clashes;
        for (int i = n; i-- > 0;) ashlib_pool_put(held[i], got[i]);
    }
    return NULL;
}
int main(void) {
    ashlib_pool_set_limit((size_t)1 << 32);
    pthread_t th[3];
    for (long k = 0; k < 3; ++k) pthread_create(&th[k], NULL, churn, (void *)k);
    int bad_children = 0;
    for (int f = 0; f < 300; ++f) {
        pid_t pid = fork();
        if (pid == 0) {
            size_t sum = 0;
            for (size_t i = 0; i < pool_count; ++i) {
                sum += pool_free[i].size;
                for (size_t j = i + 1; j < pool_count; ++j)
                    if (pool_free[i].p == pool_free[j].p) _exit(1);
            }
            if (sum != pool_bytes) _exit(1);
            size_t got;
            void *p = ashlib_pool_get(1 << 16, &got); /* the child's own use of the cache */
            ashlib_pool_put(p, got);
            _exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) ++bad_children;
    }
    stop = 1;
    for (int k = 0; k < 3; ++k) pthread_join(th[k], NULL);
    printf("clashes %ld bad_children %d\n", (long)clashes, bad_children);
    return 0;
}
"""


def test_pool_c_under_threads_and_fork(tmp_path):
    import shutil
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        pytest.skip("no C compiler")
    src = tmp_path / "stress.c"
    src.write_text(POOL_STRESS)
    exe = tmp_path / "stress"
    folder = os.path.dirname(native.__file__)
    subprocess.run([cc, "-O2", "-pthread", "-I", folder, str(src), "-o", str(exe)], check=True)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["clashes", "0", "bad_children", "0"]


def _child(q):
    # one thread, as DataLoader's workers do: once the parent has run an OpenMP parallel region
    # (any large torch op with more than one thread), a parallel region in a forked child hangs in
    # libgomp, with or without ashlib
    torch.set_num_threads(1)
    t = blocks.empty((MB,), torch.float32)
    t.fill_(3.0)
    ok = bool((t == 3.0).all())
    del t
    q.put(ok and blocks.cached_bytes() > 0)


def test_a_forked_child_uses_the_cache():
    t = blocks.empty((MB,), torch.float32)
    del t  # the parent holds a free block, which the child inherits
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert q.get(timeout=5) is True


@pytest.mark.parametrize("value, expect", [("0", "off"), ("12", "on"), ("lots", "error")])
def test_the_environment_sets_the_limit(value, expect):
    code = ("import torch, ashlib.functional as AF\n"
            "from ashlib.ops.native import blocks\n"
            "y = AF.adaptive_gumbel(torch.randn(2, 64, 64, 64), 1.0)\n"
            "print(blocks.enabled(), y.untyped_storage().resizable())\n")
    env = dict(os.environ, ASHLIB_POOL_MB=value)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    if expect == "error":
        assert r.returncode != 0 and "ASHLIB_POOL_MB must be a whole number" in r.stderr
    else:
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == (["False", "True"] if expect == "off" else ["True", "False"])


def test_the_cpp_route_takes_its_outputs_from_the_cache():
    if not native.eager_ops(wait=True):
        pytest.skip("no C++ route here")
    x = torch.randn(4, 64, 32, 32, requires_grad=True)
    y = AF.ash(x, 0.0, 1.0)
    assert "ashlib_eager" in y.grad_fn.name()
    address = y.data_ptr()
    del y
    y = AF.ash(x, 0.0, 1.0)
    assert y.data_ptr() == address and not y.untyped_storage().resizable()


def test_under_the_profiler_outputs_come_from_torch_so_that_its_memory_events_count_them():
    from torch.profiler import ProfilerActivity, profile
    x = torch.randn(4, 64, 32, 32, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        y = AF.adaptive_gumbel(x, 0.7)
        y.backward(torch.ones_like(y))
    assert y.untyped_storage().resizable() and x.grad.untyped_storage().resizable()
    allocated = sum(max(e.self_cpu_memory_usage, 0) for e in prof.events())
    assert allocated >= 3 * x.numel() * 4  # y, the ones and dL/dx at least
