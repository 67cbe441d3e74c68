"""The shards of a batch and their fixed-order sum (alexnet_raw/distributed/shards.py), in one
process: which rows and shards each rank takes, the fold's order, the byte count, refusals."""

import numpy as np
import pytest

from alexnet_raw.distributed import world as world_mod
from alexnet_raw.distributed.shards import ShardPlan, ShardReducer, fold, segments, sent_bytes


def test_every_shard_and_row_belongs_to_exactly_one_rank_in_order():
    for shards, processes in [(6, 1), (6, 2), (6, 3), (7, 3), (5, 5)]:
        plans = [ShardPlan(shards, processes, r) for r in range(processes)]
        assert [s for p in plans for s in p.mine] == list(range(shards))
        for n in (shards, 12, 37):
            rows = [p.my_rows(n) for p in plans]
            assert rows[0][0] == 0 and rows[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(rows, rows[1:]))
            assert all(plans[0].owner(s) == next(r for r, p in enumerate(plans) if s in p.mine) for s in range(shards))


@pytest.mark.parametrize("shards, processes, message", [
    (2, 3, "2 shards cannot be spread over 3 processes"), (0, 1, "shards must be a positive int"),
    (3, True, "processes must be a positive int")])
def test_plans_that_cannot_work_are_refused_naming_the_counts(shards, processes, message):
    with pytest.raises(ValueError, match=message):
        ShardPlan(shards, processes, 0)


def test_the_fold_adds_in_shard_order_which_is_not_any_order():
    pieces = [np.array([1e8], np.float32), np.array([1.0], np.float32), np.array([-1e8], np.float32)]
    assert fold(pieces)[0] == 0.0  # (1e8 + 1) rounds back to 1e8
    assert fold([pieces[0], pieces[2], pieces[1]])[0] == 1.0
    assert fold(pieces) is not pieces[0] and pieces[0][0] == np.float32(1e8)  # inputs untouched


def test_one_process_sums_its_shards_in_memory_and_sends_nothing():
    rng = np.random.default_rng(0)
    grads = {s: rng.standard_normal(10).astype(np.float32) for s in range(4)}
    reducer = ShardReducer(world_mod.LocalWorld(), ShardPlan(4, 1, 0), 10, np.float32)
    np.testing.assert_array_equal(reducer.sum_shards(grads), ((grads[0] + grads[1]) + grads[2]) + grads[3])
    assert reducer.bytes_sent == 0 == sent_bytes(10, 4, 4, 1)[0] - 0


def test_gradients_of_the_wrong_shards_or_shape_are_refused():
    reducer = ShardReducer(world_mod.LocalWorld(), ShardPlan(2, 1, 0), 10, np.float32)
    with pytest.raises(ValueError, match=r"computes shards \[0, 1\], got gradients of \[0\]"):
        reducer.sum_shards({0: np.zeros(10, np.float32)})
    with pytest.raises(ValueError, match=r"contiguous \(10,\) float32"):
        reducer.sum_shards({0: np.zeros(10, np.float32), 1: np.zeros(10, np.float64)})


def test_the_byte_count_is_the_reduce_scatter_of_each_shard_plus_the_all_gather():
    # 10 elements over 3 ranks: segments 3, 3, 4; 6 shards, two per rank
    assert [b - a for a, b in segments(10, 3)] == [3, 3, 4]
    assert sent_bytes(10, 4, 6, 3) == [4 * (2 * 7 + 2 * 3), 4 * (2 * 7 + 2 * 3), 4 * (2 * 6 + 2 * 4)]
    # one shard per rank: the usual 2 (N - 1) / N of the gradient, give or take the uneven segment
    assert sum(sent_bytes(12, 4, 3, 3)) == 4 * 2 * 2 * 12


@pytest.mark.parametrize("variables, size", [({"PMI_SIZE": "3", "PMI_RANK": "1"}, 3),
                                             ({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"}, 2),
                                             ({"PMIX_SIZE": "4", "PMIX_RANK": "3"}, 4), ({}, 1)])
def test_the_launchers_are_recognised_by_their_variables(monkeypatch, variables, size):
    for names in world_mod.LAUNCHER_VARIABLES:
        for name in names:
            monkeypatch.delenv(name, raising=False)
    for k, v in variables.items():
        monkeypatch.setenv(k, v)
    assert world_mod.launched_size() == size


def test_without_a_launcher_the_world_is_one_process_and_mpi_is_never_imported():
    import subprocess
    import sys

    code = ("import sys; from alexnet_raw.distributed import world; w = world.current(); "
            "print(type(w).__name__, w.size, 'mpi4py' in sys.modules)")
    env = {k: v for k, v in __import__("os").environ.items()
           if not any(k in names for names in world_mod.LAUNCHER_VARIABLES)}
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.split() == ["LocalWorld", "1", "False"]


@pytest.mark.parametrize("text, message", [("0", "positive number"), ("soon", "expected seconds")])
def test_a_bad_peer_timeout_is_refused_naming_the_variable_or_value(monkeypatch, text, message):
    monkeypatch.setenv(world_mod.TIMEOUT_VARIABLE, text)
    with pytest.raises(world_mod.DistributedError, match=message):
        world_mod.peer_timeout()


def test_each_rank_on_a_node_takes_gpus_after_those_of_the_ranks_before_it():
    """Logical device d of the process in slot k on GPU (k x D + d) % GPUs: with 4 GPUs, mini's two
    towers of local rank 1 go to GPUs 2 and 3 (with 2 GPUs they wrap round to 0 and 1)."""
    from types import SimpleNamespace

    from alexnet_raw import Model
    from alexnet_raw.engine import devices
    from gpu_paths import strict_standin

    places = ["nodeA pid 10", "nodeB pid 11", "nodeA pid 12", "nodeA pid 13"]
    assert [world_mod.MpiWorld.local_rank.fget(SimpleNamespace(places=places, rank=r)) for r in range(4)] == [0, 0, 1, 2]
    try:
        for gpus, expected in ((4, {0: 2, 1: 3}), (2, {0: 0, 1: 1}), (3, {0: 2, 1: 0})):
            with strict_standin(gpus):
                devices.set_process_slot(1)
                assert Model.named("mini", backend="cupy").devices.physical == expected
    finally:
        devices.set_process_slot(0)
    with pytest.raises(ValueError, match="non-negative int"):
        devices.set_process_slot(-1)
