"""The running wing: what executes a benchmark's runs and writes their folders.

`grid` (the runs one command asks for), `executor` (one run: a Plan's stages and transfers,
evaluations, checkpoints), `context` (what a run reads, built and checked before it trains, and
`RunOptions`), `provenance` (manifest and summary), `resume` (going on from a checkpoint),
`throughput` (step speed, MFU), `pricing` (`--dry-run`), beside the training loop (`train`), the
run state and its checkpoints (`state`) and the torchrun set-up (`distributed`).
"""
