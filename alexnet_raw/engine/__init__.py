"""The manual forward/backward engine: cuda-convnet layer and params files (cfg), the network graph
and its sizes (graph), placement on devices and the copies between them (devices, streams), the
layers' forward and backward (layers), parameters, `Model` (model) and `alexnet-raw split`
(split_report); networks/ holds the shipped networks."""
