"""The training commands and what they need: `alexnet-raw train` (train), `evaluate`, `predict`,
`export` (torchvision_weights), checkpoints, the run directory and its log, learning-rate
schedules (lr_schedules) and the divergence guard."""
