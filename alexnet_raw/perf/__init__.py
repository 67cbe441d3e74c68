"""Performance tooling: `alexnet-raw kernels` (kernel_report: registers, spills and the hot loop
from the SASS), `alexnet-raw bench` (bench/) and the AlexNet layers as benchmark cases
(layer_cases)."""
