"""The paper's published numbers, copied from the text with their table/figure citation.

Source: J. Decugis, A. Y. Tsai, M. Emerling, A. Ganesh, L. El Ghaoui, *The Extrapolation Power of Implicit
Models* (IJCAI 2024 workshop / arXiv 2024). Figures 3-10 are plots without printed values; the numbers the
text states about them are collected in :data:`TEXT_NUMBERS`. Nothing here is computed: the report prints
these beside our measured values, and the verdict rules (:mod:`.verdicts`) use a few of them as thresholds
(each use is named in the rule's text).
"""

from __future__ import annotations

__all__ = [
    "CITATION", "TABLE1", "TABLE1_MODELS", "TABLE2", "TABLE3", "TABLE4_MODELS", "ABLATION_TASKS",
    "TEXT_NUMBERS", "MODEL_LABELS", "label",
]  # fmt: skip

CITATION = "Decugis et al., The Extrapolation Power of Implicit Models"

# ---- Table 1 (section 3.2): train and test metrics, lower is better ------------------------------------
# Spiky data: MSE; AMC stock: MAPE. ``None``: "-" in the paper (model not run on that task).
TABLE1: dict[str, dict[str, float | None]] = {
    # paper row label: {column: value}
    "Transformer": {"spiky_train": 0.061, "spiky_test": 0.012, "amc_train": 12.2, "amc_test": 6.51},
    "ImplicitRNN": {"spiky_train": 0.015, "spiky_test": 0.004, "amc_train": 2.61, "amc_test": 1.71},
    "LSTM": {"spiky_train": 0.011, "spiky_test": 0.011, "amc_train": 10.5, "amc_test": 5.46},
    "MLP": {"spiky_train": None, "spiky_test": None, "amc_train": 5.51, "amc_test": 2.87},
    "Linear regression": {"spiky_train": None, "spiky_test": None, "amc_train": 7.19, "amc_test": 3.94},
}
# Which of our models fills each Table 1 row, per task (Table 4 architectures).
TABLE1_MODELS: dict[str, dict[str, str | None]] = {
    "Transformer": {"spiky": "masked_decoder", "volatility": "seq_encoder"},
    "ImplicitRNN": {"spiky": "implicit_rnn", "volatility": "implicit_rnn"},
    "LSTM": {"spiky": "lstm", "volatility": "lstm"},
    "MLP": {"spiky": None, "volatility": "mlp"},
    "Linear regression": {"spiky": None, "volatility": "linear"},
}

# ---- Table 2 (section 4, "Closed-loop feedback"): implicit models with and without feedback -----------
# Add./Sub./R. Avg.: test loss (MSE); R. Max.: test accuracy. The paper does not say at which shift(s).
TABLE2: dict[str, dict[str, float]] = {
    "addition": {"feedback": 3.06, "no_feedback": 4.07},
    "subtraction": {"feedback": 0.953, "no_feedback": 1.80},
    "rolling_argmax": {"feedback": 0.937, "no_feedback": 0.918},
    "rolling_average": {"feedback": 1e-4, "no_feedback": 1e-3},
}
TABLE2_ROWS = {"addition": "Add.", "subtraction": "Sub.", "rolling_argmax": "R. Max.", "rolling_average": "R. Avg."}
ABLATION_TASKS = ("addition", "subtraction", "rolling_argmax", "rolling_average")

# ---- Table 3 (appendix): training / OOD test data of each task -----------------------------------------
TABLE3: dict[str, dict[str, object]] = {
    "identity": {"n_train": 10_000, "n_test": 3_000, "train": "U(-5,5)^10", "test": "U(-k,k)^10",
                 "shifts": "k = 10..80"},
    "addition": {"n_train": 10_000, "n_test": 3_000, "train": "U(-1,1)^50", "test": "U(-k/2,k/2)^50",
                 "shifts": "k = 10..1e5"},
    "subtraction": {"n_train": 10_000, "n_test": 3_000, "train": "U(-1,1)^50", "test": "U(-k/2,k/2)^50",
                    "shifts": "k = 10..1e5"},
    "rolling_average": {"n_train": 10_000, "n_test": 3_000, "train": "N(3,1)", "test": "N(3+k,1)",
                        "shifts": "k = 5..100"},
    "rolling_argmax": {"n_train": 10_000, "n_test": 3_000, "train": "U(0,1)", "test": "U(0,k)",
                       "shifts": "k = 1e1..1e5"},
    "earthquake": {"n_train": 720_576, "n_test": 20_016, "train": "sources in (-90, 90) deg E, 30 features",
                   "test": "(90-10k, 100-10k) u (-100+10k, -90+10k) deg E", "shifts": "k = 1..9"},
    "spiky": {"n_train": 7_000, "n_test": 3_000, "train": "sin(x) + N(0, 0.25) with 20 spiky regions",
              "test": "chronological continuation"},
}  # fmt: skip

# ---- Table 4 (appendix): the models of each task (our config names) -------------------------------------
TABLE4_MODELS: dict[str, tuple[str, ...]] = {
    "identity": ("implicit", "mlp", "encdec"),
    "addition": ("implicit", "mlp", "nalu", "seq_encoder", "depth_encoder"),
    "subtraction": ("implicit", "mlp", "nalu", "seq_encoder", "depth_encoder"),
    "rolling_average": ("implicit", "lstm", "encdec"),
    "rolling_argmax": ("implicit", "implicit_rnn", "lstm", "encdec_masked", "encdec_unmasked", "encdec_nope"),
    "spiky": ("implicit_rnn", "lstm", "masked_decoder"),
    "volatility": ("implicit", "implicit_rnn", "lstm", "linear", "mlp", "seq_encoder"),
    "earthquake": ("implicit", "eikonet"),
}

# ---- numbers the text states about Figures 3-8 (no printed values in the figures) ----------------------
TEXT_NUMBERS: dict[str, dict[str, object]] = {
    "fig3_identity_implicit_mse_below": {"value": 5.0, "shifts": (0, 25), "cite": "Section 3.1, Figure 3"},
    "fig3_identity_factor_vs_transformer": {"value": 1e5, "shift": 200, "cite": "Section 3.1, Figure 3"},
    "fig3_identity_factor_vs_mlp": {"value": 1e3, "shift": 200, "cite": "Section 3.1, Figure 3"},
    "fig4_implicit_loss_below": {"value": 1.0, "shift_below": 100, "cite": "Section 3.1, Figure 4"},
    "fig4_nalu_loss_above": {"value": 1e10, "shift": 10, "cite": "Section 3.1, Figure 4"},
    "fig5_encdec_expected_accuracy": {"value": 0.9, "cite": "Section 3.1, Figure 5 (1 - 1/L, L = 10)"},
    "table1_spiky_factor": {"value": 0.011 / 0.004, "cite": "Section 3.2, Table 1 ('threefold reduction')"},
    "table1_amc_factor": {"value": 1.67, "cite": "Section 3.2, Table 1"},
    "fig7_id_improvement": {"value": 0.25e-3, "cite": "Section 3.2, Figure 7"},
    "fig7_surpass_from_k": {"value": 2, "cite": "Section 3.2, Figure 7"},
    "fig7_k9_improvement": {"value": 1.59e-2, "cite": "Section 3.2, Figure 7"},
    "fig8_iterations": {"value": {"addition": 15, "subtraction": 30, "rolling_argmax": 175},
                        "cite": "Section 4, Figure 8 ('converged in about ... iterations')"},
    "amc_rmse_footnote": {"value": {"train": 0.001784, "validation": 0.266366}, "cite": "Section 3.2, footnote 3"},
}  # fmt: skip

MODEL_LABELS: dict[str, str] = {
    "implicit": "Implicit",
    "implicit_rnn": "ImplicitRNN",
    "implicit_nofeedback": "Implicit (no feedback)",
    "mlp": "MLP",
    "encdec": "Transformer enc-dec",
    "nalu": "NALU",
    "nac": "NAC",
    "seq_encoder": "Sequential encoder",
    "depth_encoder": "Depth-wise encoder",
    "lstm": "LSTM",
    "encdec_masked": "Masked enc-dec",
    "encdec_unmasked": "Unmasked enc-dec",
    "encdec_nope": "Unmasked enc-dec, no PE",
    "masked_decoder": "Transformer (masked decoder)",
    "linear": "Linear regression (SGD)",
    "eikonet": "EikoNet",
    "persistence": "Persistence",
    "zero": "Zero forecast",
}


def label(model: str) -> str:
    """Display name of one of our model configs."""
    return MODEL_LABELS.get(model, model)
