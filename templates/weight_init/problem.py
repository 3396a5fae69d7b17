"""Weight initialisation: why zero or large random weights fail in deep nets, Xavier vs He for ReLU
(seed homework, problem 1)."""
from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np

from hwkit.checks import Array, Cases, Fields, Formula, Number, Rubric
from hwkit.problem import KernelModule, Mistake, Part, Probe, Problem, say
from hwkit.probes import call_function, read_variable
from solutions.weight_init import MODEL_ANSWER_COMPARE, MODEL_ANSWER_WHY, activation_stds, he_var, target_var, xavier_var

# init_weights probe: layer widths alternate between two bands, so consecutive widths differ by a factor
# of at least 1.4 (fan-in and fan-out mistakes stay distinguishable) and every layer has at least
# LOW[0] * HIGH[0] weights, of which SAMPLES (hidden positions) come back from the kernel. The tolerance on
# their mean square is 6 standard deviations of that estimate (sampling the layer, then sampling it again):
# a right answer fails one layer with probability about 2e-9.
LOW, HIGH = (200, 400), (560, 1100)
SAMPLES = 40_000
VAR_RTOL = round(6 * math.sqrt(2 / SAMPLES + 2 / (LOW[0] * HIGH[0])), 4)
ACT_BATCH = 256
FANS = ("n_in", "n_out")
KERNEL = KernelModule.beside(__file__)


def sample(rng: random.Random) -> dict:
    """n_in and n_out differ by at least an eighth of n_in, by construction; the experiment's depth and width."""
    n_in = rng.randint(64, 1024)
    if rng.random() < 0.5:
        n_out = n_in + rng.randint(n_in // 8 + 8, 1024)
    else:
        n_out = rng.randint(16, n_in - n_in // 8 - 8)
    return {"n_in": n_in, "n_out": n_out, "depth": rng.randint(8, 20), "width": rng.choice([128, 192, 256, 384, 512]),
            "seed": rng.randint(0, 9999)}


def note(params: dict) -> str:
    return f"n_in={params['n_in']} n_out={params['n_out']} depth={params['depth']} width={params['width']} seed={params['seed']}"


def answers(params: dict) -> dict:
    n_in, n_out = params["n_in"], params["n_out"]
    return {"wi_xavier_var": "2/(n_in + n_out)", "wi_he_var": "2/n_in",
            "wi_xavier_std": math.sqrt(xavier_var(n_in, n_out)), "wi_he_std": math.sqrt(he_var(n_in, n_out))}


# ---- (c) init_weights ---------------------------------------------------------------------------

INIT_CHECK = Cases(Fields({"var": (3.0, Array(rtol=VAR_RTOL, atol=0.0)), "normal": (1.0, Array(rtol=0, atol=0)),
                           "independent": (0.0, Array(rtol=0, atol=0)), "bias_max_abs": (1.0, Number(abs=1e-9))}))
# independent earns nothing by itself: it is what makes the mean square a variance (summary reports none without it)
# The self-check sees no target variance (it would give the formula parts away): the draw's form and biases only.
PUBLIC_INIT_CHECK = Cases(Fields({"normal": (1.0, Array(rtol=0, atol=0)), "independent": (1.0, Array(rtol=0, atol=0)),
                                  "bias_max_abs": (1.0, Number(abs=1e-9))}))


def _init_probe(rng: random.Random, public: bool = False) -> Probe:
    bands = [LOW, HIGH]
    start = rng.randint(0, 1)
    widths = [rng.randint(*bands[(start + i) % 2]) for i in range(rng.randint(4, 5))]
    g = np.random.default_rng(rng.getrandbits(63))
    positions = [g.choice(a * b, size=SAMPLES, replace=False).astype(np.int64) for a, b in zip(widths[:-1], widths[1:])]
    inputs = {"widths": widths, "seed": rng.randint(0, 2**31 - 1), "positions": positions}
    return KERNEL.probe("init_summary" if public else "init_samples", inputs)


def _init_summary(reply, probe: Probe):
    """In the grader: the statistics of the kernel's samples (kernel.py's summary, run here, with the hidden
    positions the samples were taken at)."""
    summary = KERNEL.load()["summary"]
    return [summary(record, probe.inputs) for record in reply] if isinstance(reply, list) else reply


def _layer_vars(widths, fn) -> list[float]:
    return [fn(a, b) for a, b in zip(widths[:-1], widths[1:])]


def _init_reference(probe: Probe) -> list:
    w = probe.inputs["widths"]
    return [{"var": _layer_vars(w, lambda a, b, s=scheme: target_var(s, a, b)), "normal": [1] * (len(w) - 1),
             "independent": [1] * (len(w) - 1), "bias_max_abs": 0.0} for scheme in ("xavier", "he")]


def _init_mistakes(probe: Probe) -> list[Mistake]:
    w = probe.inputs["widths"]

    def both(xavier_fn, he_fn):
        return [{"var": _layer_vars(w, xavier_fn)}, {"var": _layer_vars(w, he_fn)}]

    return [
        # weights that are not an independent zero-mean draw (every neuron the same, all positive): whatever
        # their mean square, the network cannot break the symmetry, so no credit
        Mistake("INIT_NOT_INDEPENDENT", [{"independent": [0] * (len(w) - 1)}] * 2, _FEEDBACK["INIT_NOT_INDEPENDENT"],
                fraction=0.0),
        Mistake("XAVIER_FOR_HE", both(xavier_var, xavier_var), _FEEDBACK["XAVIER_FOR_HE"]),
        Mistake("HE_FOR_XAVIER", both(he_var, he_var), _FEEDBACK["HE_FOR_XAVIER"]),
        Mistake("HE_USED_FAN_OUT", both(xavier_var, lambda a, b: 2.0 / b), _FEEDBACK["HE_USED_FAN_OUT"]),
        Mistake("HE_NO_FACTOR_2", both(xavier_var, lambda a, b: 1.0 / a), _FEEDBACK["HE_NO_FACTOR_2"]),
        Mistake("STD_GAVE_VARIANCE", both(lambda a, b: xavier_var(a, b) ** 2, lambda a, b: he_var(a, b) ** 2),
                _FEEDBACK["STD_GAVE_VARIANCE"]),
        Mistake("XAVIER_NO_FACTOR_2", both(lambda a, b: 1.0 / (a + b), he_var), _FEEDBACK["XAVIER_NO_FACTOR_2"]),
        # only with the right variances and zero biases: an untouched model (PyTorch's default uniform init) is no
        # half-right answer; any other shape than the normal's (uniform, Laplace) with the right variance alike
        Mistake("INIT_UNIFORM_NOT_NORMAL", [{**want, "normal": [0] * (len(w) - 1)} for want in _init_reference(probe)],
                _FEEDBACK["INIT_UNIFORM_NOT_NORMAL"], fraction=0.5),
    ]


# ---- (d) activation_stds ------------------------------------------------------------------------



def _act_probe(params: dict, rng: random.Random) -> Probe:
    cases = []
    for scheme in ("xavier", "he", rng.choice(["xavier", "he"])):
        depth = rng.randint(4, 12)
        cases.append([[rng.randint(32, 384) for _ in range(depth + 1)], scheme, rng.randint(0, 99999)])
    return call_function("activation_stds", cases)


def _act_reference(probe: Probe, **switches) -> list:
    out = []
    for widths, scheme, seed in probe.inputs["cases"]:
        sw = dict(switches)
        scheme = sw.pop("scheme", {}).get(scheme, scheme)
        out.append(activation_stds(widths, scheme, seed, batch=ACT_BATCH, **sw))
    return out


def _act_mistakes(probe: Probe) -> list[Mistake]:
    return [
        Mistake("XAVIER_FOR_HE", _act_reference(probe, scheme={"he": "xavier"}), _FEEDBACK["XAVIER_FOR_HE"]),
        Mistake("HE_FOR_XAVIER", _act_reference(probe, scheme={"xavier": "he"}), _FEEDBACK["HE_FOR_XAVIER"]),
        Mistake("HE_USED_FAN_OUT", _act_reference(probe, mode="fan_out"), _FEEDBACK["HE_USED_FAN_OUT"]),
        Mistake("ACT_NO_RELU", _act_reference(probe, relu=False), say(
            "The network is a ReLU MLP: apply ReLU after every linear layer (h = relu(linear(h))).",
            "这是一个 ReLU 多层感知机：每个线性层之后都要接 ReLU(h = relu(linear(h)))。")),
        Mistake("ACT_STD_BEFORE_RELU", _act_reference(probe, pre_activation=True), say(
            "Record the standard deviation of the activation after the ReLU, h.std(), not of linear(h).",
            "应记录 ReLU 之后激活值的标准差 h.std()，而不是 linear(h) 的。")),
        Mistake("ACT_BIAS_NOT_ZEROED", _act_reference(probe, zero_bias=False), say(
            "The biases must be set to zero after the weights are initialised; you kept nn.Linear's default biases.",
            "初始化权重之后要把偏置置零；你保留了 nn.Linear 默认的偏置。")),
        Mistake("ACT_RNG_ORDER", _act_reference(probe, layers_first=True), say(
            "Close, but the random numbers were drawn in another order: create each nn.Linear right before "
            "initialising and applying it (layer by layer), not all layers first.",
            "很接近，但随机数的抽取顺序不同：应逐层进行，创建一个 nn.Linear 后立即初始化并前向计算，而不是先创建所有层。")),
    ]


_FEEDBACK = {
    "INIT_UNIFORM_NOT_NORMAL": say("The weights are not normally distributed (a uniform draw, for instance): draw them from "
                                   "N(0, σ²) as asked, e.g. with nn.init.xavier_normal_ or nn.init.kaiming_normal_, not the "
                                   "*_uniform_ versions.",
                                   "权重不服从正态分布（例如均匀分布）：应按题目从 N(0, σ²) 中抽取，例如使用 "
                                   "nn.init.xavier_normal_ 或 nn.init.kaiming_normal_，而不是 *_uniform_ 版本。"),
    "INIT_NOT_INDEPENDENT": say("The weights are not independent zero-mean draws: they repeat along the rows or columns "
                                "of the weight matrix, or their mean is not zero. With every neuron alike (the symmetry "
                                "that zero initialisation suffers from) the network cannot learn different features, "
                                "whatever the variance. Draw every weight on its own from N(0, σ²).",
                                "权重不是相互独立、均值为零的随机抽样：它们沿权重矩阵的行或列重复，或均值不为零。"
                                "神经元彼此相同（与全零初始化一样的对称性问题）时，网络无法学到不同的特征，方差再对也没用。"
                                "应从 N(0, σ²) 中独立抽取每一个权重。"),
    "XAVIER_FOR_HE": say("For He initialisation the variance is 2/n_in (fan-in only, with the factor 2 that makes up for "
                         "ReLU zeroing half of the pre-activations); you used Xavier's 2/(n_in + n_out).",
                         "He 初始化的方差为 2/n_in（只用扇入，因子 2 用来补偿 ReLU 把一半的输入置零）；你用了 Xavier 的 2/(n_in + n_out)。"),
    "HE_FOR_XAVIER": say("Xavier (Glorot) initialisation uses 2/(n_in + n_out), the compromise between keeping the forward "
                         "(n_in) and the backward (n_out) variance; you used He's 2/n_in.",
                         "Xavier(Glorot)初始化使用 2/(n_in + n_out)，兼顾前向（n_in）与反向（n_out）方差；你用了 He 的 2/n_in。"),
    "HE_USED_FAN_OUT": say("He initialisation (mode='fan_in') divides by the number of inputs n_in, not by n_out.",
                           "He 初始化(mode='fan_in')除以输入个数 n_in,而不是 n_out。"),
    "HE_NO_FACTOR_2": say("1/n_in is LeCun initialisation; for ReLU, He doubles it to 2/n_in because ReLU keeps only half of "
                          "the signal's second moment.",
                          "1/n_in 是 LeCun 初始化；对 ReLU,He 初始化把它加倍为 2/n_in,因为 ReLU 只保留信号二阶矩的一半。"),
    "XAVIER_NO_FACTOR_2": say("Xavier's variance is 2/(n_in + n_out) (the reciprocal of the average fan), not 1/(n_in + n_out).",
                              "Xavier 的方差是 2/(n_in + n_out)（平均扇入扇出的倒数），而不是 1/(n_in + n_out)。"),
    "STD_GAVE_VARIANCE": say("Standard deviation and variance are mixed up: σ = sqrt(variance), and torch.nn.init.normal_ "
                             "and torch.randn(...) * σ take the standard deviation.",
                             "标准差与方差混淆了:σ = sqrt（方差）,torch.nn.init.normal_ 和 torch.randn(...) * σ 需要的是标准差。"),
    "VARIANCE_GAVE_STD": say("This is the variance; the question asks for the standard deviation σ = sqrt(variance).",
                             "这是方差；题目要求的是标准差 σ = sqrt（方差）。"),
    "XAVIER_UNIFORM_BOUND": say("sqrt(6/(n_in + n_out)) is the bound a of Xavier's uniform version U(−a, a); the standard "
                                "deviation of the normal version is sqrt(2/(n_in + n_out)).",
                                "sqrt(6/(n_in + n_out)) 是 Xavier 均匀分布版本 U(−a, a) 的边界 a;正态分布版本的标准差是 sqrt(2/(n_in + n_out))。"),
}


# (f) the written comparison: each scheme's design idea, ReLU's half, and what each does to the gradient.
COMPARE_RUBRIC = Rubric(concepts=(
    ("forward_and_backward", ("n_in + n_out", "n_in+n_out", "fan_in + fan_out", "fan_in+fan_out", "fan-in and fan-out",
                              "fan in and fan out", "扇入和扇出", "扇入与扇出", "扇入、扇出", "forward and backward",
                              "forward and the backward", "前向和反向", "前向与反向", "正向和反向", "both directions",
                              "折中", "compromise", "平均", "average")),
    ("symmetric_activation", ("tanh", "对称", "symmetric", "近似线性", "linear", "sigmoid")),
    ("relu_zeroes_half", ("一半", "half", "负半轴", "负半", "截断", "置零", "置为 0", "置为0", "变为 0", "变为0",
                          "zeroes", "zeros out", "zero out", "negative", "负值", "负数", "非对称", "asymmetr")),
    ("he_doubles", ("2/n_in", "2/fan_in", "factor 2", "factor of 2", "twice", "double", "加倍", "两倍", "2 倍", "2倍",
                    "翻倍", "补偿", "compensat", "乘以 2", "乘以2")),
    ("xavier_shrinks", ("逐层减小", "逐层变小", "逐层缩小", "越来越小", "消失", "vanish", "shrink", "decay", "衰减",
                        "1/√2", "1/sqrt(2)", "0.7", "减半", "halve", "smaller and smaller", "decreas", "减小")),
    ("he_stable", ("稳定", "stable", "保持不变", "基本不变", "大致不变", "constant", "preserv", "maintain", "stays",
                   "does not shrink", "doesn't shrink", "不会消失", "不消失")),
))


def parts(params: dict) -> list[Part]:
    n_in, n_out = params["n_in"], params["n_out"]
    ref = answers(params)
    f = Formula(symbols=FANS, functions=("sqrt",))
    std_mistakes = {
        "xavier": [Mistake("VARIANCE_GAVE_STD", xavier_var(n_in, n_out), _FEEDBACK["VARIANCE_GAVE_STD"]),
                   Mistake("HE_FOR_XAVIER", math.sqrt(he_var(n_in, n_out)), _FEEDBACK["HE_FOR_XAVIER"]),
                   Mistake("XAVIER_UNIFORM_BOUND", math.sqrt(6 / (n_in + n_out)), _FEEDBACK["XAVIER_UNIFORM_BOUND"])],
        "he": [Mistake("VARIANCE_GAVE_STD", he_var(n_in, n_out), _FEEDBACK["VARIANCE_GAVE_STD"]),
               Mistake("XAVIER_FOR_HE", math.sqrt(xavier_var(n_in, n_out)), _FEEDBACK["XAVIER_FOR_HE"]),
               Mistake("HE_USED_FAN_OUT", math.sqrt(2 / n_out), _FEEDBACK["HE_USED_FAN_OUT"]),
               Mistake("HE_NO_FACTOR_2", math.sqrt(1 / n_in), _FEEDBACK["HE_NO_FACTOR_2"])],
    }
    return [
        Part("wi_xavier_var", 2, say("Xavier variance as a formula", "Xavier 方差公式"),
             probe=lambda rng: read_variable("wi_xavier_var"), reference=lambda probe: ref["wi_xavier_var"],
             check=f, kind="formula", mistakes=lambda probe: [
                 Mistake("HE_FOR_XAVIER", "2/n_in", _FEEDBACK["HE_FOR_XAVIER"]),
                 Mistake("XAVIER_NO_FACTOR_2", "1/(n_in + n_out)", _FEEDBACK["XAVIER_NO_FACTOR_2"]),
                 Mistake("XAVIER_UNIFORM_BOUND", "sqrt(6/(n_in + n_out))", _FEEDBACK["XAVIER_UNIFORM_BOUND"]),
                 Mistake("STD_GAVE_VARIANCE", "sqrt(2/(n_in + n_out))", _FEEDBACK["STD_GAVE_VARIANCE"])]),
        Part("wi_he_var", 2, say("He variance as a formula", "He 方差公式"),
             probe=lambda rng: read_variable("wi_he_var"), reference=lambda probe: ref["wi_he_var"],
             check=f, kind="formula", mistakes=lambda probe: [
                 Mistake("XAVIER_FOR_HE", "2/(n_in + n_out)", _FEEDBACK["XAVIER_FOR_HE"]),
                 Mistake("HE_NO_FACTOR_2", "1/n_in", _FEEDBACK["HE_NO_FACTOR_2"]),
                 Mistake("HE_USED_FAN_OUT", "2/n_out", _FEEDBACK["HE_USED_FAN_OUT"]),
                 Mistake("STD_GAVE_VARIANCE", "sqrt(2/n_in)", _FEEDBACK["STD_GAVE_VARIANCE"])]),
        Part("wi_xavier_std", 1, say("Xavier standard deviation for your layer", "你的层的 Xavier 标准差"),
             probe=lambda rng: read_variable("wi_xavier_std"), reference=lambda probe: ref["wi_xavier_std"],
             check=Number(rel=2e-3), mistakes=lambda probe: std_mistakes["xavier"]),
        Part("wi_he_std", 1, say("He standard deviation for your layer", "你的层的 He 标准差"),
             probe=lambda rng: read_variable("wi_he_std"), reference=lambda probe: ref["wi_he_std"],
             check=Number(rel=2e-3), mistakes=lambda probe: std_mistakes["he"]),
        Part("init_weights", 4, say("Function init_weights(model, scheme)", "函数 init_weights(model, scheme)"),
             probe=_init_probe, reference=_init_reference, check=INIT_CHECK, mistakes=_init_mistakes,
             kind="code", hidden_inputs=True, interpret=_init_summary,
             public_probe=lambda rng: _init_probe(rng, public=True),
             public_reference=lambda probe: [[{k: v for k, v in case.items() if k != "var"}
                                              for case in _init_reference(probe)]],
             public_check=PUBLIC_INIT_CHECK),
        Part("activation_stds", 4, say("Experiment activation_stds(widths, scheme, seed)",
                                        "实验函数 activation_stds(widths, scheme, seed)"),
             probe=lambda rng: _act_probe(params, rng), reference=_act_reference,
             check=Cases(Array(rtol=1e-3, atol=1e-6)), mistakes=_act_mistakes, kind="code", hidden_inputs=True),
        Part("wi_why", 3, say("Why not zeros, why not large random values", "为什么不能全零或较大的随机值"),
             probe=lambda rng: read_variable("wi_why"), reference=lambda probe: MODEL_ANSWER_WHY,
             check=Rubric(concepts=(
                 ("symmetry", ("对称", "symmetr", "learn the same", "learns the same", "same feature", "identical neuron",
                                "identical unit", "all the same", "学到相同", "学到一样", "学的都一样", "完全一样", "一模一样")),
                 ("same_gradient", ("相同的梯度", "相同梯度", "梯度相同", "梯度都相同", "梯度一样", "梯度也相同", "梯度都一样",
                                    "梯度也一样", "一样的梯度", "梯度一致", "同样的梯度", "更新相同", "更新也相同",
                                    "same gradient", "identical gradient", "gradients are identical", "receive the same", "get the same",
                                    "updated the same", "update the same", "updated identically", "move together", "同样的更新",
                                    "相同的更新", "同步更新",
                                    "gradients are the same", "same update", "identical update")),
                 ("exploding", ("爆炸", "explod", "饱和", "saturat", "blow up", "blows up", "blew up", "blowing up", "diverg",
                                "grow exponentially", "grows exponentially", "too large", "too big", "overflow",
                                "发散", "溢出", "越来越大", "变得很大", "变得极大")),
                 ("vanishing", ("消失", "vanish", "shrink to zero", "shrinks to zero", "die out", "dies out", "too small",
                                "go to zero", "goes to zero", "tends to zero", "趋于零", "趋于0", "趋近于零", "趋近于0",
                                "越来越小", "变得很小", "接近零", "接近0")),
             )), kind="written"),
        Part("wi_compare", 4, say("Xavier vs He for ReLU: design ideas and gradient propagation",
                                  "以 ReLU 为例对比 Xavier 与 He：设计思路与梯度传播"),
             probe=lambda rng: read_variable("wi_compare"), reference=lambda probe: MODEL_ANSWER_COMPARE,
             check=COMPARE_RUBRIC, kind="written"),
    ]


def context(params: dict) -> dict:
    return {"act_widths": [params["width"]] * (params["depth"] + 1), "act_batch": ACT_BATCH,
            "var_rtol_pct": f"{100 * VAR_RTOL:.1f}", "wi_model_answer_src": repr(MODEL_ANSWER_WHY),
            "wi_compare_answer_src": repr(MODEL_ANSWER_COMPARE)}


PROBLEM = Problem(
    id="weight-init",
    title=say("Weight initialisation: Xavier vs He", "参数初始化:Xavier 与 He"),
    points=21, sample=sample, note=note, parts=parts, answers=answers, context=context,
    template=Path(__file__).with_name("notebook.j2"),
)
