"""Data-parallel training across processes and nodes, on MPI (mpi4py: `pip install ".[distributed]"`).

`mpirun -n N alexnet-raw train ...` (or `srun`) runs one model over N processes:
- world.py: which process this is (MPI when a launcher started it, else one process with no MPI
  imported at all), and every exchange with the other ranks, each bounded by a deadline that
  names the rank that did not answer.
- shards.py: the global batch as S shards (S >= N, default N, kept in checkpoints), each a
  contiguous run of rows; a process computes the gradients of its shards, and the shard
  gradients are summed element by element in shard order (a reduce-scatter of segments, then an
  all-gather), so N processes give bit-identical sums to one process computing the S shards.
  Also the bytes each rank sends per step (split_report gives the same count).
- step.py: a training step of a Model over its shards of the global batch.
- fingerprint.py: what must be identical on every rank (code, network files, data, settings),
  compared at start-up.
"""
