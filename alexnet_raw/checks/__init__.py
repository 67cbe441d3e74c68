"""Checking our kernels: each op's PyTorch reference (torch_reference), the tolerance policy,
`alexnet-raw verify` and `alexnet-raw gradcheck`."""
