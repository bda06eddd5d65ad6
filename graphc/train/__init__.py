"""The training toolkit, as `gc.optim`, `gc.schedules`, `gc.init`, `gc.data`,
`gc.diagnostics`, `gc.gradcheck` and `gc.to_device`/`gc.to_host`: optim (the optimizers),
updates (their rules, and batch norm's running averages, compiled like models),
schedules, init, data (datasets, minibatches, dropout's noise), diagnostics, gradcheck,
device (training state in device memory)."""
