"""PyTorch's side: each layer's same work, and torchvision's AlexNet for a whole training step."""

from __future__ import annotations

from ...checks import torch_reference


class TorchLayer:
    """The same layer in PyTorch: forward(), backward_data(), backward_weights() (each one
    timed phase), on `device` ("cpu" or "cuda"), float32."""

    def __init__(self, case, batch, device="cpu", seed=0):
        import torch

        self.torch, self.case = torch, case
        gen = torch.Generator().manual_seed(seed)

        def rand(*shape):
            return torch.randn(*shape, generator=gen).to(device)

        s = case.spec
        self.xs = [rand(batch, *shape) for shape in case.input_shapes]
        self.grad = rand(batch, *case.output_shape)
        self.ws = [rand(*w) * 0.01 for w in case.weight_shapes]
        self.b = rand(*case.bias_shape) * 0.01 if case.bias_shape else None
        if case.kind == "conv":
            # cuda-convnet's ceil rule: the missing right/bottom pixels read as zeros (padded once, untimed)
            self.conv = []
            for i, x in enumerate(self.xs):
                st, p = s.stride[i], s.padding[i]
                xp = torch_reference.ceil_rule_pad(x, s.filter_size[i], st, p) if s.size_rule == "ceil" else x
                self.conv.append((xp, dict(stride=st, padding=p, groups=s.groups[i])))
        elif case.kind in ("pool", "lrn", "rnorm"):
            self.x_leaf = self.xs[0].clone().requires_grad_()
            self.y = self._pointwise(self.x_leaf)
        elif case.kind == "local":
            self._local_graph()

    def _local_graph(self):
        """The locally connected layer (no stock torch op: torch_reference.local, unfold + einsum) on
        leaves whose gradients autograd gives: the backward phases are autograd of that graph."""
        self.leaves = [t.clone().requires_grad_() for t in (self.xs[0], self.ws[0], self.b)]
        self.y = self._local(*self.leaves)

    def _local(self, x, w, b):
        s = self.case.spec
        return torch_reference.local(x, w, b, s.stride, s.padding, s.groups, True)

    def float64(self):
        """The same layer with every tensor in float64 (the validation reference of conv and fc)."""
        twin = object.__new__(TorchLayer)
        twin.torch, twin.case = self.torch, self.case
        d = self.torch.float64
        twin.xs = [x.to(d) for x in self.xs]
        twin.grad, twin.ws = self.grad.to(d), [w.to(d) for w in self.ws]
        twin.b = self.b.to(d) if self.b is not None else None
        if self.case.kind == "conv":
            twin.conv = [(xp.to(d), kw) for xp, kw in self.conv]
        elif self.case.kind in ("pool", "lrn", "rnorm"):
            twin.x_leaf = twin.xs[0].clone().requires_grad_()
            twin.y = twin._pointwise(twin.x_leaf)
        elif self.case.kind == "local":
            twin._local_graph()
        return twin

    def _pointwise(self, x):
        s = self.case.spec
        if self.case.kind == "pool":
            return torch_reference.max_pool2d(x, s.size, s.stride, 0, ceil_mode=s.size_rule == "ceil")
        if self.case.kind == "lrn":
            return torch_reference.local_response_norm(x, s.size, s.scale, s.pow, s.min_div)
        return torch_reference.same_map_norm(x, s.size, s.scale, s.pow, s.min_div)

    def forward(self):
        F = self.torch.nn.functional
        if self.case.kind == "conv":
            out = None
            for i, (xp, kw) in enumerate(self.conv):
                y = F.conv2d(xp, self.ws[i], self.b if i == 0 else None, **kw)
                out = y if out is None else out + y
            return out
        if self.case.kind == "fc":
            out = None
            for i, x in enumerate(self.xs):
                y = F.linear(x.reshape(x.shape[0], -1), self.ws[i], self.b if i == 0 else None)
                out = y if out is None else out + y
            return out
        if self.case.kind == "local":
            return self._local(self.xs[0], self.ws[0], self.b)
        return self._pointwise(self.xs[0])

    def backward_data(self):
        torch = self.torch
        if self.case.kind == "conv":
            return [torch.nn.grad.conv2d_input(xp.shape, self.ws[i], self.grad, **kw)
                    for i, (xp, kw) in enumerate(self.conv)]
        if self.case.kind == "fc":
            return [self.grad @ w for w in self.ws]
        if self.case.kind == "local":
            return torch.autograd.grad(self.y, self.leaves[0], self.grad, retain_graph=True)
        return torch.autograd.grad(self.y, self.x_leaf, self.grad, retain_graph=True)

    def backward_weights(self):
        torch = self.torch
        if self.case.kind == "conv":
            gws = [torch.nn.grad.conv2d_weight(xp, self.ws[i].shape, self.grad, **kw)
                   for i, (xp, kw) in enumerate(self.conv)]
            return gws, self.grad.sum(dim=(0, 2, 3))
        if self.case.kind == "fc":
            return [self.grad.t() @ x.reshape(x.shape[0], -1) for x in self.xs], self.grad.sum(0)
        if self.case.kind == "local":
            grad_w, grad_b = torch.autograd.grad(self.y, self.leaves[1:], self.grad, retain_graph=True)
            return [grad_w], grad_b
        return None


def measure_torch(layer, clock, warmup, repeats, flush=None):
    phases = ["forward", "backward_data"] + (["backward_weights"] if layer.case.weight_shapes else [])
    out = {p: [] for p in phases}
    for r in range(warmup + repeats):
        if flush:
            flush()
        tokens = {}
        for p in phases:
            t = clock.start()
            getattr(layer, p)()
            tokens[p] = clock.stop(t)
        clock.synchronize()
        if r >= warmup:
            for p in phases:
                out[p].append(clock.seconds(tokens[p]))
    return out


def torch_alexnet(device="cpu"):
    """torchvision's AlexNet topology (the `torchvision` network) in plain torch.nn, for timing."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten(),
        nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(),
        nn.Linear(4096, 1000),
    ).to(device)


def measure_train_torch(batch, device, clock, warmup, repeats, flush=None):
    import torch

    torch.manual_seed(0)
    net = torch_alexnet(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 224, 224, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)
    times = []
    for r in range(warmup + repeats):
        if flush:
            flush()
        t = clock.start()
        opt.zero_grad(set_to_none=False)
        torch.nn.functional.cross_entropy(net(x), labels).backward()
        opt.step()
        token = clock.stop(t)
        clock.synchronize()
        if r >= warmup:
            times.append(clock.seconds(token))
    return times
