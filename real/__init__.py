"""The real backend: run rankscope programs with torch.distributed and record what happened.

[Note: the real backend]
The same :class:`~simulator.program.Program` that the simulator times is executed here: every
transfer becomes a point-to-point send/receive between two processes (gloo on CPUs, NCCL on GPUs),
every REDUCE a ``add_`` into the receiver's buffer. Each op is timestamped on its ranks and written
under its op id in the trace format of :mod:`simulator.trace`, so a measured and a simulated trace
join on op id. Inputs are encoded so that the received values *reveal* which ranks they contain
(:mod:`real.encoding`); the decoded provenance is checked against the simulator's
(:func:`simulator.provenance.layout`) and the result against the native collective.

Modules of the collective path, one concept each:
  encoding   values that reveal their provenance; program bytes -> tensor elements
  plan       a program cut into per-rank waves of sends and receives
  clock      timestamps (host clock or CUDA events) and cross-host offsets by ping-pong
  rank       one rank: its context and wait budget, process group, published values, errors
  procs      local rank processes: start (fork or spawn), watch, kill what is left
  launch     the one launcher: start N local ranks or join a torchrun job; who failed and why
  executor   run one program on one rank
  verify     measured against simulated provenance, program against native result
  native     the native collectives (dist.all_reduce, ...) and their trace programs
  runner     ``rankscope real``: launch, execute, gather on rank 0, write the trace
  sweep      ``rankscope real sweep``: native and P2P collectives over sizes
  calibrate  ``rankscope calibrate``: ping-pong per pair -> alpha, bandwidth -> topology TOML
  faults     ``--inject-fault`` for the failure tests
  validate   ``rankscope validate``: calibrate, simulate, run, compare (the loop); ringstep (its
             measurements on ranks), validate_fit (fits, calibrated topology), validate_report
  train, train_compare, profile_convert   ``rankscope real train``

The command line (:mod:`rankscope.cli.real`, :mod:`rankscope.cli.train`) sits above this
package and imports it only in its handlers; the simulator never imports it. Only functions that
run ranks import torch.
"""
