"""The keyframe store: older keyframes' bulk leaves memory for a spill file and comes back intact."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lkd_perception.odometry.features import BevFeatures
from lkd_perception.odometry.keyframes import Keyframe, KeyframeStore, pack_cloud


def _keyframe(kid: int, rng: np.random.Generator, binary: bool = True) -> Keyframe:
    n = int(rng.integers(50, 200))
    desc = rng.integers(0, 256, (n, 32), dtype=np.uint8) if binary else rng.normal(size=(n, 16)).astype(np.float32)
    f = BevFeatures(rng.uniform(0, 200, (n, 2)), rng.uniform(-50, 50, (n, 2)), desc, binary)
    polar = rng.uniform(0, 1, (20, 60))
    return Keyframe.create(
        kid, 1_000_000_000 * (kid + 1), rng.uniform(-80, 80, (int(rng.integers(100, 900)), 3)), f, polar
    )


def _same(a: Keyframe, b: Keyframe) -> bool:
    fa, fb = a.features, b.features
    return (
        a.id == b.id
        and a.stamp_ns == b.stamp_ns
        and fa.binary == fb.binary
        and all(
            np.array_equal(x, y) and x.dtype == y.dtype
            for x, y in [
                (a.cloud, b.cloud),
                (fa.uv, fb.uv),
                (fa.xy, fb.xy),
                (fa.descriptors, fb.descriptors),
                (a.polar, b.polar),
                (a.ring_key, b.ring_key),
            ]
        )
    )


@pytest.mark.parametrize("binary", [True, False])
def test_spilled_keyframes_come_back_bit_exact(binary):
    rng = np.random.default_rng(0)
    kfs = [_keyframe(i, rng, binary) for i in range(40)]
    store = KeyframeStore(resident=5)
    for kf in kfs:
        store.append(kf)
    assert len(store) == 40
    assert len(store._whole) == 5 and store.spilled_bytes > 0  # only the newest five stay whole
    # cloud, features and ring-sector image of the 35 older ones went to the file; ring keys stay
    assert store.spilled_bytes == sum(kf.nbytes - kf.ring_key.nbytes for kf in kfs[:35])
    for kf in reversed(kfs):
        assert _same(store[kf.id], kf)
    np.testing.assert_array_equal(store.stamps, [kf.stamp_ns for kf in kfs])
    np.testing.assert_array_equal(store.ring_keys(7), np.stack([kf.ring_key for kf in kfs[:7]]))
    assert np.array_equal(store.polar(3), kfs[3].polar) and store.polar(3).dtype == kfs[3].polar.dtype  # spilled
    assert np.array_equal(store.polar(38), kfs[38].polar)  # resident
    with pytest.raises(IndexError):
        store[40]
    store.close()


def test_store_rejects_out_of_order_ids_and_replaces_in_place():
    rng = np.random.default_rng(1)
    store = KeyframeStore(resident=2)
    for i in range(4):
        store.append(_keyframe(i, rng))
    with pytest.raises(ValueError, match="out of sequence"):
        store.append(_keyframe(7, rng))
    # replacing a spilled keyframe's cloud: read back the new one
    new_cloud = pack_cloud(np.ones((3, 3)))
    store[0] = replace(store[0], cloud=new_cloud)
    assert np.array_equal(store[0].cloud, new_cloud) and len(store._whole) == 2
    with pytest.raises(ValueError, match="cannot replace"):
        store[1] = store[2]
