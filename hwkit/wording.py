"""hwkit's own messages in the reader's language.

The grader and the kernel-side runtime write their reasons in English, once (logs, the gradebook, grades.csv for
the instructor). Where a Chinese student or instructor reads one (a feedback page, the summary, a part's
feedback), it passes through `in_language`: every message hwkit itself makes has its Chinese here, matched by
its pattern; what a student's own code said (an exception's message) is shown as it was written. Messages
joined with "; " are translated one by one.
"""
from __future__ import annotations

import re

from hwkit.records import Status

_ZH_STATUS = {Status.OK: "正常", Status.CELL_ERRORS: "单元格出错", Status.TIMEOUT: "超时",
              Status.CPU_LIMIT: "超出 CPU 时间上限", Status.MEMORY_LIMIT: "超出内存上限", Status.KILLED: "被终止",
              Status.KERNEL_DIED: "内核崩溃", Status.INVALID: "无效的笔记本", Status.NO_SUBMISSION: "未提交",
              Status.AMBIGUOUS: "提交不明确", Status.GRADER_ERROR: "评分程序出错",
              Status.VARIANT_MISMATCH: "题目版本不符"}

_NAME = r"(.{1,120}?)"
_ZH_MESSAGES: list[tuple[str, str]] = [
    # the kernel-side runtime (hwkit_kernel) and the problems' kernel modules
    (rf"'{_NAME}' is not defined", "未定义 '{0}'"),
    (rf"'{_NAME}' is not a function", "'{0}' 不是函数"),
    (r"the module returned (\S+), not a tensor", "模块返回的是 {0}，而不是张量"),
    (r"no probe named (.+)", "没有名为 {0} 的检查"),
    (r"an array of dtype (\S+) cannot be sent", "dtype 为 {0} 的数组无法传回评分程序"),
    (r"the answer is nested too deeply", "答案的嵌套层数过深"),
    (r"too many arrays in one message", "一个答案中的数组过多"),
    (r"the data is nested too deeply or has too many items", "数据的嵌套层数过深或元素过多"),
    (r"unexpected (\S+) in the data", "数据中出现了无法传回的类型 {0}"),
    (r"bad (?:float|integer) marker|bad array reference", "答案的数据格式有误"),
    (r"an array is too large", "数组过大"),
    (r"an array could not be read \((.*)\)", "无法读取数组（{0}）"),
    (r"an array has a non-numeric dtype", "数组的 dtype 不是数值类型"),
    (r"a range counted from the end needs the stream's length", "从末尾计数的范围需要知道数据的长度"),
    (rf"{_NAME} must return a matplotlib Figure, got (\S+)", "{0} 必须返回 matplotlib 的 Figure，实际返回了 {1}"),
    (r"a probe in the self-check bundle is damaged \((.*)\)", "自检数据中的一项检查已损坏（{0!t}）"),
    (r"not a packed blob(?: \((.*)\))?", "数据不是预期的打包格式"),
    # the grader, asking for a part's answer
    (r"the answer is too large", "答案过大"),
    (r"the answer could not be read \((.*)\)", "无法读取答案（{0}）"),
    (r"not graded: (.+)", "未评分：{0!t}"),
    (r"no time was left to check this part", "没有剩余时间检查此部分"),
    (r"not checked: the kernel stopped responding while an earlier part was checked",
     "未检查：检查前面的部分时内核停止了响应"),
    (r"the kernel died while this part was checked", "检查此部分时内核崩溃"),
    (r"checking this part took over (\d+)s", "检查此部分超过了 {0} 秒"),
    # the grader, running the notebook
    (r"the kernel died", "内核崩溃"),
    (r"the kernel could not start \((.*)\)(.*)", "内核无法启动（{0}）{1}"),
    (r"the kernel did not respond \((.*)\)", "内核没有响应（{0}）"),
    (r"(\d+) cell\(s\) raised an error", "{0} 个单元格抛出了错误"),
    (r"output beyond the notebook's (\d+) MB limit was dropped", "超出笔记本 {0} MB 上限的输出已被丢弃"),
    (r"the notebook ran past its (\d+(?:\.\d+)?)s limit", "笔记本运行超过了 {0} 秒的时间上限"),
    (r"cell (\d+) ran past its (\d+(?:\.\d+)?)s limit and was interrupted", "第 {0} 个单元格运行超过 {1} 秒的上限，已被中断"),
    (r"the kernel died while running cell (\d+)", "运行第 {0} 个单元格时内核崩溃"),
    (r"cell (\d+) ran out of memory \(MemoryError\)", "第 {0} 个单元格内存不足（MemoryError）"),
    (r"the kernel ran out of its memory limit", "内核超出了内存上限"),
    (r"the kernel used up its CPU-time limit", "内核用完了 CPU 时间上限"),
    (r"the kernel ran past the whole-notebook time limit and was stopped", "内核超出整个笔记本的时间上限，已被停止"),
    (r"the kernel was killed by signal (\d+)", "内核被信号 {0} 终止"),
    # the grader, reading and choosing the notebook
    (r"the folder holds no \.ipynb notebook", "文件夹中没有 .ipynb 笔记本"),
    (r"no folder for this student in the submissions", "提交中没有该学生的文件夹"),
    (r"several notebooks \((.*)\) and none is identifiable as this assignment's", "有多个笔记本（{0}），无法确定哪个属于本次作业"),
    (r"the file is (\d+) MB, over the (\d+) MB limit", "文件大小为 {0} MB，超过了 {1} MB 的上限"),
    (r"the file is not UTF-8 text", "文件不是 UTF-8 文本"),
    (r"the file could not be read \((.*)\)", "无法读取文件（{0}）"),
    (r"the file is not valid notebook JSON \((.*)\)", "文件不是有效的笔记本 JSON（{0}）"),
    (r"the file is JSON nested too deeply to be a notebook", "文件的 JSON 嵌套过深，不是笔记本"),
    (r"the file is JSON but not a Jupyter notebook", "文件是 JSON，但不是 Jupyter 笔记本"),
    (r"the notebook could not be read as nbformat 4 \((.*)\)", "无法按 nbformat 4 读取笔记本（{0}）"),
    (r"The notebook is invalid and is missing an expected key: (.+)", "笔记本无效，缺少必需的键：{0}"),
    (r"the notebook has no cell list", "笔记本中没有单元格列表"),
    (r"the grading worker exited while grading this submission", "评分进程在评分这份提交时退出"),
    (r"the cluster's workers died while grading this submission, too often to try again",
     "集群中评分这份提交的工作进程多次退出，不再重试"),
    (r"the cluster could not run the grading task \((.*)\)", "集群无法运行评分任务（{0}）"),
    (r"the worker's reply could not be read \((.*)\)", "无法读取工作进程的回复（{0}）"),
    # the variant check's notes that name nobody (hwkit/integrity.py)
    (r"the variant check could not run \((\w+)\)", "题目版本检查无法运行（{0}）"),
    (r"the notebook's variant id matches no student of the roster", "笔记本的题目版本编号与名单中的任何学生都不符"),
    (rf"the notebook's metadata names {_NAME}, who is not on the roster", "笔记本的元数据写的是 {0}，此人不在名单中"),
    (r"the notebook's metadata names another student \(not confirmed by its cells or answers\)",
     "笔记本的元数据写的是另一名学生（单元格和答案未证实）"),
    (rf"metadata variant id is {_NAME}'s", "元数据中的题目版本编号属于 {0}"),
    (rf"metadata names {_NAME}", "元数据写的是 {0}"),
    (rf"parameter cells match {_NAME}'s variant", "参数单元格与 {0} 的题目版本一致"),
    (rf"(\d+) parameter cells? match(?:es)? {_NAME}'s variant(?:, (\d+) this student's)?",
     "{0} 个参数单元格与 {1} 的题目版本一致{2?，{2} 个与本人的一致}"),
    (rf"(\d+) answers? equals? {_NAME}'s references?", "{0} 个答案等于 {1} 的参考答案"),
    (r"also ([a-z ]+): (.+)", "另外：{0!s}：{1!t}"),
    (r"also ([a-z ]+)", "另外：{0!s}"),
]
_COMPILED = [(re.compile(pattern + r"\Z", re.S), zh) for pattern, zh in _ZH_MESSAGES]


def status_in(status: str, lang: str) -> str:
    """A submission's status word (hwkit.records.Status) for a reader of `lang`."""
    return _ZH_STATUS.get(status, status) if lang == "zh" else status


def in_language(message: str, lang: str) -> str:
    """One of hwkit's English messages (or several joined with "; ") for a reader of `lang`; text hwkit did not
    write (a student's own exception message) is returned as it is."""
    if lang != "zh" or not message:
        return message
    return "；".join(_zh(piece) for piece in message.split("; "))


def _zh(message: str) -> str:
    for pattern, zh in _COMPILED:
        m = pattern.match(message)
        if m:
            zh = _OPTIONAL.sub(lambda o: o[2] if m.group(int(o[1]) + 1) else "", zh)
            return _SLOT.sub(lambda o: _filled(m.group(int(o[1]) + 1) or "", o[2]), zh)
    return message


# In a translation: "{0}" is the pattern's first group as written, "{0!t}" a message translated in turn, "{0!s}"
# a status word; "{2?，{2} 个...}" is text kept only when group 2 matched.
_SLOT = re.compile(r"\{(\d)(!t|!s)?\}")
_OPTIONAL = re.compile(r"\{(\d)\?(.*?\{\1\}.*?)\}")


def _filled(group: str, conversion: str | None) -> str:
    if conversion == "!t":
        return _zh(group)
    if conversion == "!s":
        return status_in(group, "zh")
    return group
