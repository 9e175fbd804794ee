"""The standard baseline: utterance functionals + a scikit-learn classifier.

openSMILE eGeMAPSv02 (88) or ComParE_2016 (6,373) functionals, or MFCC mean/std (40),
standardised on the training split, classified by a linear SVM, an RBF SVM or logistic
regression. Same folds, same records, same discipline as the deep models: the
regularisation constant C is chosen on the fold's validation split (UA, first best in
grid order) from a small grid, the classifier is trained on the training split only, and
the test split is scored once. Records are ordinary serlib records (the grid is the
"history", one row per C), so every table shows the baseline beside the deep models.
With ``task=dimensional`` each dimension gets a linear SVR or a ridge regression
(``regressor``) on targets standardised on the training split, the constant (C, or ridge's
alpha) chosen on the validation mean CCC::

    python -m serlib sweep --experiment functionals --corpus emodb --root DIR --classes all \\
        --set feature_set=compare classifier=svm_linear
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .. import metrics
from ..audio import InputChecks
from ..config import ExperimentConfig
from ..constants import LABEL, UTT_ID
from ..errors import ConfigError, DataError
from ..fields import setting
from ..functionals import FEATURE_SETS, FunctionalsConfig, extract_functionals
from .base import Experiment, register

CLASSIFIERS = ("svm_linear", "svm_rbf", "logreg")
REGRESSORS = ("svr_linear", "ridge")
DEFAULT_GRIDS = {
    "svm_linear": (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
    "svm_rbf": (0.1, 1.0, 10.0, 100.0),
    "logreg": (1e-3, 1e-2, 1e-1, 1.0, 10.0),
    "svr_linear": (1e-4, 1e-3, 1e-2, 1e-1, 1.0),  # C
    "ridge": (1.0, 10.0, 100.0, 1000.0, 10000.0),  # alpha (more regularisation as it grows)
}


@dataclass
class FunctionalsExperimentConfig(ExperimentConfig):
    """Our choices (no paper to follow): the C grids of ``DEFAULT_GRIDS``, balanced class
    weights (UA is the headline metric), RBF ``gamma="scale"``."""

    experiment: str = "functionals"
    feature_set: str = setting("egemaps", choices=tuple(FEATURE_SETS))  # egemaps | compare | mfcc_stats
    classifier: str = setting("svm_linear", choices=CLASSIFIERS)
    regressor: str = setting("svr_linear", choices=REGRESSORS)  # task=dimensional: linear SVR | ridge
    c_grid: tuple[float, ...] = setting((), gt=0)  # () = the classifier's (regressor's) default grid
    class_weight: str | None = setting("balanced", choices=(None, "balanced"))
    normalization: str = "none"           # the pipeline standardises (training split only)
    epochs: int = 1                       # no epochs: one fit per C

    @property
    def grid(self) -> tuple[float, ...]:
        return self.c_grid or DEFAULT_GRIDS[self.classifier if self.task == "categorical" else self.regressor]


def pipeline(config: FunctionalsExperimentConfig, c: float):
    """StandardScaler → classifier with regularisation constant ``c``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if config.classifier == "logreg":
        clf = LogisticRegression(C=c, class_weight=config.class_weight, max_iter=5000)
    else:
        kernel = "linear" if config.classifier == "svm_linear" else "rbf"
        clf = SVC(C=c, kernel=kernel, gamma="scale", class_weight=config.class_weight)
    return make_pipeline(StandardScaler(), clf)


def regressor(config: FunctionalsExperimentConfig, c: float):
    """StandardScaler → one dimension's regressor with constant ``c`` (SVR's C, ridge's alpha)."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVR

    model = Ridge(alpha=c) if config.regressor == "ridge" else LinearSVR(C=c, dual="auto", max_iter=20000,
                                                                          random_state=config.seed)
    return make_pipeline(StandardScaler(), model)


@register
class FunctionalsExperiment(Experiment):
    name = "functionals"
    regression = True  # dimensional: linear SVR or ridge (``regressor``), chosen on validation mean CCC
    is_baseline = True
    title = "baseline: openSMILE functionals or MFCC statistics + SVM / logistic regression (scikit-learn)"
    notebook, docs = "08_compare_models", "docs/statistics.md"
    model_file, features_note = "serlib/functionals.py", "`feature_set=egemaps`, `compare`, `mfcc_stats`"
    Config = FunctionalsExperimentConfig
    neural = False

    def extract(self, manifest):
        return extract_functionals(manifest, FunctionalsConfig(self.config.feature_set), InputChecks.from_config(self.config),
                                   on_error=self.config.bad_audio, workers=self.config.feature_workers,
                                   progress=self.config.progress)

    def model(self, n_features, n_classes, context=None):
        return pipeline(self.config, self.config.grid[0])

    def fit_select_test(self, setup) -> dict:
        """Fit one pipeline per C on the training split, pick C on validation UA (test UA
        with ``selection="test"``, the leaky protocol), refit it with class probabilities,
        and score the test split once.

        The predicted label is the classifier's own decision; the probabilities of the
        SVMs come from sigmoid (Platt) calibration on cross-validated training scores.
        ``task=dimensional``: :meth:`fit_select_test_values`."""
        if self.config.task == "dimensional":
            return self.fit_select_test_values(setup)
        if self.config.task != "categorical":
            raise ConfigError(f"functionals: task={self.config.task} is not supported (categorical or dimensional)")
        classes = setup.classes
        label_of = dict(zip(setup.manifest[UTT_ID], setup.manifest[LABEL]))
        data = {name: (np.stack([setup.store[u].numpy() for u in ids]), [label_of[u] for u in ids])
                for name, ids in setup.split_ids.items()}
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = data["train"], data["val"], data["test"]
        history = []
        for i, c in enumerate(self.config.grid, start=1):
            start = time.perf_counter()
            model = pipeline(self.config, c).fit(x_train, y_train)
            val = model.predict(x_val)
            row = {"epoch": i, "c": c, "val_wa": metrics.weighted_accuracy(y_val, val, classes),
                   "val_ua": metrics.unweighted_accuracy(y_val, val, classes)}
            if self.config.selection == "test":
                test = model.predict(x_test)
                row.update({"test_wa": metrics.weighted_accuracy(y_test, test, classes),
                            "test_ua": metrics.unweighted_accuracy(y_test, test, classes)})
            row["seconds"] = time.perf_counter() - start
            history.append(row)
        key = "test_ua" if self.config.selection == "test" else "val_ua"
        best = max(history, key=lambda r: -1.0 if np.isnan(r[key]) else r[key])  # first best in grid order
        final = pipeline(self.config, best["c"]).fit(x_train, y_train)
        prediction = list(final.predict(x_test))
        if self.config.classifier != "logreg":  # SVM scores -> probabilities: sigmoid calibration (Platt)
            from sklearn.calibration import CalibratedClassifierCV

            names, counts = np.unique(y_train, return_counts=True)
            if counts.min() < 2:  # sklearn would raise a bare ValueError from inside the calibration
                lonely = [str(n) for n, k in zip(names, counts) if k < 2]
                raise DataError(None, f"fold {setup.config.fold}: class(es) {lonely} have 1 training utterance; "
                                      f"{self.config.classifier}'s probability calibration needs at least 2 per class "
                                      "(use classifier=logreg, or more data)")
            folds = min(3, counts.min())
            final = CalibratedClassifierCV(pipeline(self.config, best["c"]), ensemble=False, cv=max(2, folds)).fit(
                x_train, y_train)
        known = list(final.classes_)
        probs, fitted = np.zeros((len(x_test), len(classes))), final.predict_proba(x_test)
        for j, c in enumerate(classes):  # a class absent from training keeps probability 0
            if c in known:
                probs[:, j] = fitted[:, known.index(c)]
        test = metrics.scores(y_test, prediction, classes)
        test.update({"ids": setup.split_ids["test"], "truth": y_test, "prediction": prediction,
                     "probabilities": probs})
        return {"test": test, "history": history, "best_epoch": best["epoch"], "best_metric": best[key]}

    def fit_select_test_values(self, setup) -> dict:
        """``task=dimensional``: per grid constant, one regressor per dimension on the
        training split's standardised targets; the constant with the best validation mean
        CCC (in the corpus's scale; test with ``selection="test"``) is refitted and the
        test split scored once."""
        dims, scaler = list(self.config.dims), setup.scaler
        values = setup.manifest.set_index(UTT_ID)[dims]
        label_of = dict(zip(setup.manifest[UTT_ID], setup.manifest[LABEL]))
        x = {name: np.stack([setup.store[u].numpy() for u in ids]) for name, ids in setup.split_ids.items()}
        y = {name: values.loc[ids].to_numpy(float) for name, ids in setup.split_ids.items()}
        y_train = scaler.transform(y["train"])

        def fit_predict(c: float, splits: tuple[str, ...]) -> dict:
            models = [regressor(self.config, c).fit(x["train"], y_train[:, j]) for j in range(len(dims))]
            return {s: scaler.inverse(np.stack([m.predict(x[s]) for m in models], axis=1)) for s in splits}

        history = []
        key = "test_ccc_mean" if self.config.selection == "test" else "val_ccc_mean"
        for i, c in enumerate(self.config.grid, start=1):
            start = time.perf_counter()
            predicted = fit_predict(c, ("val", "test") if self.config.selection == "test" else ("val",))
            row = {"epoch": i, "c": c}
            for split, pred in predicted.items():
                scores = metrics.dimensional_scores(y[split], pred, dims)
                row.update({f"{split}_ccc_{d}": scores[f"ccc_{d}"] for d in (*dims, "mean")})
            row["seconds"] = time.perf_counter() - start
            history.append(row)
        best = max(history, key=lambda r: -np.inf if np.isnan(r[key]) else r[key])  # first best in grid order
        prediction = fit_predict(best["c"], ("test",))["test"]
        test = metrics.dimensional_scores(y["test"], prediction, dims)
        test.update({"ids": setup.split_ids["test"], "truth": [label_of[u] for u in setup.split_ids["test"]],
                     "values": prediction, "true_values": y["test"]})
        return {"test": test, "history": history, "best_epoch": best["epoch"], "best_metric": best[key]}
