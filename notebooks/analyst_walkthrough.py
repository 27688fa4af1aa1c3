# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 信访事项分类：分析人员入门 (analyst walk-through)
#
# This notebook shows an analyst, step by step, how to
#
# 1. load a classification model and see what it knows,
# 2. classify one petition, then a whole file,
# 3. read the evaluation report of a model on labelled data.
#
# It is kept in git as a plain Python file (jupytext "percent" format, no outputs). Open it
# in Jupyter with jupytext installed, or turn it into a notebook and run it:
#
# ```
# jupytext --to notebook notebooks/analyst_walkthrough.py
# jupyter nbconvert --to notebook --execute notebooks/analyst_walkthrough.ipynb
# ```
#
# The settings below can be changed here or given as environment variables. By default it
# uses the current model and the project's written example letters in `data/examples/`
# (invented letters, not real cases).

# %%
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from IPython.display import Image, display

here = Path.cwd()
ROOT = Path(os.environ.get("TRIAGE_NB_ROOT") or (here.parent if here.name == "notebooks" else here))
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

MODEL = os.environ.get("TRIAGE_NB_MODEL") or None  # a model folder; None: the current model
SAMPLE = Path(os.environ.get("TRIAGE_NB_SAMPLE") or ROOT / "data/examples/written_land_b.csv")
# Outputs go outside the repository, so nothing the notebook writes is committed by mistake.
WORK = Path(os.environ.get("TRIAGE_NB_WORK") or Path(tempfile.gettempdir()) / "triage_notebook")
WORK.mkdir(parents=True, exist_ok=True)
pd.set_option("display.max_colwidth", 40)
print("model:", MODEL or "(current)", "| sample:", SAMPLE, "| output:", WORK)

# %% [markdown]
# ## 1. Load a model
#
# A model is a folder with the artefact (`model.skops`) and `metadata.json`: when and from
# what it was trained, which issue types (labels) it knows, and its cross-validated scores.

# %%
from triage.registry import load_model  # noqa: E402
from triage.routing import load_table  # noqa: E402

loaded = load_model(MODEL)
table = load_table()
print("version:", loaded.version, "| folder:", loaded.path)
print("trained:", loaded.metadata.get("created_at"))
labels = pd.DataFrame(
    [
        {
            "label": label,
            "名称": table.issue_types[label].name if label in table.issue_types else "?",
            "承办部门": table.issue_types[label].department if label in table.issue_types else "?",
        }
        for label in loaded.metadata.get("labels", [])
    ]
)
display(labels)

# %% [markdown]
# ## 2. Classify one petition
#
# `Triage` ties the model to the routing table: it returns the issue type, the top three
# candidates with probabilities, the department and route, flags (集体访, 越级访 …), the
# priority and the deadlines. `needs_review` is true when the model is unsure.

# %%
from triage.pipeline import Triage  # noqa: E402

triage = Triage.load(model=MODEL)
result = triage.classify(
    "我们是C2县白鹤岭镇马鬃岭村村民，2019年村里土地被征收用于修建物流园，至今征地补偿款"
    "还有一半没有发到农户手里。请求县自然资源局核查补偿款去向，尽快足额发放。",
    title="征地补偿款迟迟不到位",
)
print(json.dumps(result.to_dict(), ensure_ascii=False, indent=1)[:1500])

# %% [markdown]
# ## 3. Classify a whole file
#
# The same as `triage batch --input FILE --output FILE --report DIR` on the command line:
# every row is kept, with `pred_*` columns added; rows that cannot be classified get
# `pred_status = error` and a reason.

# %%
from triage.bulk import BatchOptions, format_summary, run_batch  # noqa: E402

summary = run_batch(
    BatchOptions(
        input=SAMPLE,
        output=WORK / "sample_classified.csv",
        model=MODEL,
        jobs=1,
        progress=False,
        report=WORK / "batch_report",
    )
)
print(format_summary(summary))
classified = pd.read_csv(WORK / "sample_classified.csv", dtype=str, keep_default_na=False)
columns = ["title", "pred_label_name", "pred_confidence", "pred_department", "pred_status"]
display(classified[[c for c in columns if c in classified.columns]].head(8))

# %% [markdown]
# The sample has a `label` column (the right answer), so we can see where the model agrees:
# rows are the true labels, columns the predicted ones.

# %%
if "label" in classified.columns:
    ok = classified[classified["pred_status"] == "ok"]
    display_table = pd.crosstab(ok["label"], ok["pred_label"])
else:
    display_table = classified["pred_label_name"].value_counts().to_frame()
display(display_table)

# %% [markdown]
# The report folder has bar charts per department (and per month when the file has a date
# column) and `pivot.csv`, ready for a slide.

# %%
for png in sorted((WORK / "batch_report").glob("*.png")):
    print(png.name)
    display(Image(filename=str(png)))

# %% [markdown]
# ## 4. Read the evaluation report
#
# `triage evaluate --model DIR --data FILE --report DIR` scores a model on labelled data:
# accuracy, macro-F1 (the average of the per-class F1, so rare classes count as much as
# common ones), precision/recall/F1 per class, and a confusion matrix (PNG + JSON).
#
# How to read it: **recall** of a class is the share of its petitions the model finds
# (low recall on 违法用地 means such letters are sent elsewhere); **precision** is the share
# of the model's answers for that class that are right. Judge a model on the classes your
# office handles, not only on the overall accuracy.

# %%
cmd = [
    sys.executable,
    "-m",
    "triage",
    "evaluate",
    "--data",
    str(SAMPLE),
    "--report",
    str(WORK / "evaluation"),
]
if MODEL:
    cmd += ["--model", str(MODEL)]
run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
print(run.stdout[-3000:] or run.stderr[-3000:])

# %%
reports = sorted((WORK / "evaluation").glob("*.json"))
report = json.loads(reports[0].read_text(encoding="utf-8")) if reports else {}
print({k: v for k, v in report.items() if isinstance(v, (int, float, str))})
per_class = report.get("per_class") or report.get("classes") or {}
table_of_classes = pd.DataFrame(per_class)
display(table_of_classes.T if isinstance(per_class, dict) else table_of_classes)

# %%
for png in sorted((WORK / "evaluation").glob("*.png")):
    print(png.name)
    display(Image(filename=str(png)))
