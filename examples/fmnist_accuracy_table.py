"""Fashion-MNIST MLP 784-300-100-10: test accuracy of PHEW, SynFlow-L2, SynFlow, random and IMP masks at 10/5/2%, 3 seeds, 1 epoch.

Run: .venv/bin/python examples/fmnist_accuracy_table.py (about 8 minutes on 2 cores).
"""

import numpy as np
import torch

import pathnet
from pathnet.select import select
from pathnet.train import fit, imp, load_dataset

torch.set_num_threads(2)
train, test = load_dataset("fashion-mnist", "train"), load_dataset("fashion-mnist", "test")
rows = []
for seed in (0, 1, 2):
    for method in ("phew", "synflow_l2", "synflow", "random", "imp"):
        for d in (0.1, 0.05, 0.02):
            model = pathnet.models.mlp(seed=seed)
            if method == "imp":
                # IMP rounds cached by the similarity run for seed 0; others build it here (1 epoch/round)
                masks = imp(
                    pathnet.models.mlp(seed=seed),
                    train,
                    test,
                    density=0.02,
                    epochs_per_round=1,
                    seed=seed,
                    device="cpu",
                    out_dir=f"/tmp/imp_acc/s{seed}",
                    progress=False,
                )
                mask = min(masks, key=lambda m: abs(np.log(m.density / d)))
            else:
                opts = {"iterations": 100} if method.startswith("synflow") else {}
                mask = select(method, model, d, seed=seed, **opts)
            r = fit(model, mask, train, test, epochs=1, seed=seed, progress=False, device="cpu")
            rows.append((method, d, seed, mask.density, r.final["test_acc"]))
            print(method, d, seed, f"{mask.density:.4f}", r.final["test_acc"], flush=True)
print("\nmethod      density  mean   min    max  (test accuracy %, 1 epoch, 3 seeds)")
for method in ("phew", "synflow_l2", "synflow", "random", "imp"):
    for d in (0.1, 0.05, 0.02):
        a = [100 * x[4] for x in rows if x[0] == method and x[1] == d]
        print(f"{method:11s} {100 * d:5.0f}%  {np.mean(a):5.2f} {np.min(a):5.2f} {np.max(a):5.2f}")
