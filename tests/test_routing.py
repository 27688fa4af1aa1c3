"""Routing table loading/validation and the override rules (``triage.routing``)."""

from __future__ import annotations

import importlib.util
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from triage.errors import ConfigError
from triage.normalize import normalize
from triage.routing import (
    NO_ROUTE,
    CueSet,
    NearPair,
    RoutingConfigError,
    RoutingTable,
    UnknownIssueTypeError,
    decide,
    first_chars,
    literal_gate,
    load_table,
    parse_table,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEXT = resources.files("triage.data").joinpath("routing.yaml").read_text(encoding="utf-8")
TAXONOMY_IDS = {
    "urban_housing", "labor_social_security", "education_culture", "commerce_tourism",
    "environment", "health", "transport", "land_planning", "land_acquisition",
    "property_registration", "land_illegal_use", "mining", "land_title_dispute",
}  # fmt: skip


@pytest.fixture(scope="module")
def table() -> RoutingTable:
    return load_table()


def route_of(table: RoutingTable, text: str, label: str = "land_acquisition") -> str:
    return decide(table, normalize(text), label).route


# --- the default table --------------------------------------------------------------------------


def test_default_table_has_the_taxonomy(table: RoutingTable) -> None:
    assert set(table.issue_types) == TAXONOMY_IDS | {"other"}
    assert table.fallback_issue_type == "other"
    assert table.issue_types["other"].department == "信访局综合科"
    assert table.issue_types["property_registration"].department == "不动产登记中心"
    for issue in table.issue_types.values():
        assert issue.name and issue.department and issue.disposition in {"受理", "转送", "告知"}
    assert set(table.routes) == {"none", "agri", "forestry", "litigation", "discipline"}
    assert table.routes["litigation"].disposition == "告知"
    assert table.routes["agri"].department == "农业农村局"
    assert [rule.order for rule in table.overrides] == sorted(r.order for r in table.overrides)


def test_default_table_is_cached(table: RoutingTable) -> None:
    assert load_table() is table
    assert load_table(None) is table


def test_deadlines_and_priority_come_from_the_table(table: RoutingTable) -> None:
    limits = table.deadlines
    assert (limits.acknowledge_days, limits.resolve_days) == (15, 60)
    assert (limits.extension_days, limits.review_request_days) == (30, 30)
    assert table.default_priority == "normal"


# --- decisions and reasons ----------------------------------------------------------------------


def test_model_label_decides_without_override(table: RoutingTable) -> None:
    decision = decide(table, normalize("小区路灯坏了三个月没人修"), "urban_housing", 0.83)
    assert decision.route == NO_ROUTE
    assert decision.rule is None and decision.evidence == ()
    assert decision.department == "住房和城乡建设局 / 城市管理局"
    assert decision.reason == "模型判定为“住房与城乡建设”(0.83)"
    assert decide(table, "征地补偿款没发", "land_acquisition").reason == "模型判定为“征地拆迁补偿”"


def test_abstention_goes_to_the_fallback_type(table: RoutingTable) -> None:
    decision = decide(table, normalize("户口迁移的问题想咨询一下"), None)
    assert decision.route == NO_ROUTE
    assert decision.department == "信访局综合科"
    assert "其他/不属于本系统" in decision.reason


def test_unknown_label_is_a_config_error(table: RoutingTable) -> None:
    with pytest.raises(UnknownIssueTypeError) as info:
        decide(table, "文本", "no_such_type")
    assert isinstance(info.value, ConfigError)
    assert "no_such_type" in str(info.value)
    table.check_labels(sorted(TAXONOMY_IDS))
    with pytest.raises(UnknownIssueTypeError, match="housing2"):
        table.check_labels(["urban_housing", "housing2"])


def test_rule_decision_carries_reason_and_evidence(table: RoutingTable) -> None:
    decision = decide(table, normalize("村里把我家的承包地流转给老板种树"), "land_acquisition")
    assert decision.route == "agri"
    assert decision.rule == "agri"
    assert decision.department == "农业农村局" and decision.disposition == "转送"
    assert "承包地" in decision.evidence
    assert decision.reason.startswith("规则“agri”")
    assert "命中“承包地”" in decision.reason


# --- litigation: only matters already before a court, arbitration or 行政复议 --------------------


@pytest.mark.parametrize(
    "text",
    [
        "我已起诉开发商,法院还没判。",
        "2019年法院判决开发商三个月内交房,至今未执行。",
        "县法院下了裁定书,驳回了我们的请求。",
        "劳动仲裁裁决公司支付工资,公司不履行。",
        "市政府的行政复议决定书维持了原处罚。",
        "此案目前正在审理,请领导关注。",
        "判决生效后我已向法院申请执行,一年了没有结果。",
        "我们向区人民法院提起行政诉讼,立案庭不受理。",
        "官司打了五年,还是没有结果。",
    ],
)
def test_litigation_fires_on_pending_or_decided_cases(table: RoutingTable, text: str) -> None:
    decision = decide(table, normalize(text), "urban_housing")
    assert decision.route == "litigation", decision
    assert decision.disposition == "告知"


@pytest.mark.parametrize(
    "text",
    [
        "我不想起诉,只希望政府协调把补偿款发下来。",
        "法院旁边的土地被人围起来建了厂房。",
        "这件事没有仲裁,也没有打官司。",
        "如果走司法程序,时间太长,我们等不起。",
        "您也可以向人民法院提起诉讼。",
        "我们也想到法院起诉,但是请不起律师。",
        "根据《最高人民法院关于审理建筑物区分所有权纠纷案件具体应用法律若干问题的解释》,车位归业主。",
    ],
)
def test_litigation_ignores_mere_mentions(table: RoutingTable, text: str) -> None:
    assert route_of(table, text) == NO_ROUTE


@pytest.mark.parametrize(
    "text",
    [
        "几十户业主诉讼要求开发商赔偿。",
        "本人起诉开发商后,开发商一直拖着不给钱。",
        "我们先后向区法院起诉。",
    ],
)
def test_litigation_when_the_petitioners_sue(table: RoutingTable, text: str) -> None:
    assert route_of(table, text) == "litigation"


@pytest.mark.parametrize(
    "text",
    [
        "别人起诉了开发商,我们还在等政府协调。",  # someone else's case
        "厂里的工人们上诉无门,只好找政府。",  # a lament, not a case
        "如果我起诉,要等多久?",
        "我们也想起诉,但是请不起律师。",
    ],
)
def test_litigation_ignores_other_peoples_cases_and_wishes(table: RoutingTable, text: str) -> None:
    assert route_of(table, text) == NO_ROUTE


def test_a_neighbours_lawsuit_leaves_the_matter_to_its_route(table: RoutingTable) -> None:
    text = "我是外嫁女,听说邻村有人官司打赢了,可我们村还是不给我分钱。"
    assert route_of(table, text) == "agri"


# --- discipline: 检举 an official's corruption, not a complaint about attitude -----------------


@pytest.mark.parametrize(
    "text",
    [
        "实名举报村支书贪污征地补偿款。",
        "检举镇土地所所长收受开发商好处费,充当违建的保护伞。",
        "村组长私分集体资产,中饱私囊,请纪委介入调查。",
        "希望纪委查一查我们村的账。",
    ],
)
def test_discipline_fires_on_reports_of_corruption(table: RoutingTable, text: str) -> None:
    decision = decide(table, normalize(text), "land_acquisition")
    assert decision.route == "discipline", decision
    assert decision.department == "纪检监察机关"


@pytest.mark.parametrize(
    "text",
    [
        "村书记接访时态度恶劣,说话难听,请领导批评教育。",
        "实名举报国土所科长接访态度恶劣,对群众不耐烦。",
        "镇干部工作拖拉,三个月了还没给我回复。",
        "村干部是否存在贪污、挪用补偿款的问题?请公开账目。",  # a question, not an accusation
    ],
)
def test_discipline_ignores_attitude_complaints(table: RoutingTable, text: str) -> None:
    assert route_of(table, text) == NO_ROUTE


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        # 举报/检举 with the cadre before or after it.
        ("我要实名举报村支书,他把低保名额给了自家亲戚。", "discipline_official"),
        ("村主任把集体的鱼塘租给外人,我们实名举报。", "discipline_official"),
        # 查处/查查: the cadre is the object.
        ("请求查处村主任私卖宅基地的问题。", "discipline_official"),
        ("请上级部门查一查村干部的账。", "discipline_official"),
        # 控告 a public body or its staff.
        ("控告县公安局某派出所民警违法扣押我的货车。", "discipline_official"),
        # The misconduct described without 举报: a cadre taking, colluding, being bribed.
        ("组长霸占集体的荒山种果树。", "discipline_conduct"),
        ("镇里有领导和砂场老板勾结,河道被挖得乱七八糟。", "discipline_conduct"),
        ("老板逢年过节给城管队长送红包,违建一直没人管。", "discipline_conduct"),
        ("厂长挪用了扶贫专项资金去盖自家的楼。", "discipline_conduct"),
    ],
)
def test_discipline_new_patterns(table: RoutingTable, text: str, rule: str) -> None:
    decision = decide(table, normalize(text), "land_acquisition")
    assert (decision.route, decision.rule) == ("discipline", rule), decision


@pytest.mark.parametrize(
    "text",
    [
        # The cadre is the addressee or the one asked to act, not the accused.
        "王书记您好,我举报小区旁边有人违法建房。",
        "尊敬的李书记,我实名举报楼下加建的阳光房。",
        "我们向镇书记领导举报了楼下的违建。",
        "请局长严查这家饭店的油烟问题。",
        "城管队的干部答应下周就查处这个违章棚子。",
        # 控告 a company or the body a 控告信 is addressed to; collusion and bribes without an
        # official; 被 between cadre and act.
        "控告某塑料厂排放有毒气体。",
        "控告信 致某区人民政府:河边的砂场天天排污。",
        "开发商与施工队勾结偷工减料。",
        "给医生送红包的风气要刹一刹。",
        "村干部说山林被隔壁组的人侵占了。",
        # Mentions asked as questions or denied.
        "是不是有领导和开发商勾结?",
        "没有干部私分补偿款,只是发得太慢。",
    ],
)
def test_discipline_new_patterns_ignore_mentions(table: RoutingTable, text: str) -> None:
    assert route_of(table, text) == NO_ROUTE, decide(table, normalize(text), "land_acquisition")


def test_land_routes_come_before_conduct(table: RoutingTable) -> None:
    # A cadre seizing forest land is a forestry matter first (order 30 < 50).
    text = normalize("村支书带人侵占集体山林,砍了几百棵杉树。")
    assert decide(table, text, "land_title_dispute").route == "forestry"


# --- agri and forestry ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "村里把我家的承包地流转出去,一分钱没给。",
        "我是外嫁女,户口一直在娘家,村里不给分征地补偿款。",
        "离婚后村里收回了我的承包田。",
        "土地承包经营权证上的面积比实际少了两亩。",
    ],
)
def test_agri(table: RoutingTable, text: str) -> None:
    assert route_of(table, text) == "agri"


@pytest.mark.parametrize(
    "text",
    ["我家的林权证办了三年还没拿到。", "有人盗伐我家自留山上的杉树。", "林木采伐许可证怎么办?"],
)
def test_forestry(table: RoutingTable, text: str) -> None:
    assert route_of(table, text, "land_title_dispute") == "forestry"


@pytest.mark.parametrize(
    "text",
    [
        "诺亚山林小区门口的公交站太远。",  # a place name, not forest land
        "我们组和邻组为山界争了几十年,请镇里调处。",  # 山林地界 → 土地权属争议, not forestry
        "楼下烧烤店油烟太大。",
    ],
)
def test_no_override_on_unrelated_words(table: RoutingTable, text: str) -> None:
    assert route_of(table, text, "land_title_dispute") == NO_ROUTE


def test_cues_deep_in_a_long_letter_are_background(table: RoutingTable) -> None:
    filler = "小区的路灯坏了很久,晚上出行很不方便。" * 30  # ~570 characters
    assert route_of(table, filler + "隔壁小区的业主和开发商打了官司。") == NO_ROUTE
    assert route_of(table, "隔壁小区的业主和开发商打了官司。" + filler) == "litigation"


def test_first_rule_by_order_wins(table: RoutingTable) -> None:
    text = normalize("外嫁女承包地被收回,我已向法院起诉,正在审理。")
    assert decide(table, text, "land_acquisition").route == "litigation"
    old, new = "route: litigation\n    order: 10", "route: litigation\n    order: 90"
    swapped = DEFAULT_TEXT.replace(old, new)
    assert decide(parse_table(swapped), text, "land_acquisition").route == "agri"


# --- user tables --------------------------------------------------------------------------------


def test_user_table_from_a_path(tmp_path: Path) -> None:
    text = DEFAULT_TEXT.replace("department: 农业农村局", "department: 县农业农村局 经管站")
    text = text.replace("    department: 信访局综合科", "    department: 县信访局 办信科")
    path = tmp_path / "county.yaml"
    path.write_text(text, encoding="utf-8")
    county = load_table(path)
    assert county is not load_table()
    assert county.source == str(path)
    assert decide(county, normalize("承包地被村里收回"), "land_acquisition").department == (
        "县农业农村局 经管站"
    )
    assert decide(county, "看不懂的留言", None).department == "县信访局 办信科"
    assert load_table(str(path)).routes["agri"].department == "县农业农村局 经管站"


def test_county_rule_with_only_for_require_and_lexicon(tmp_path: Path) -> None:
    rule = """
  - id: county_mining
    name: 矿山复绿
    route: forestry
    order: 5
    only_for: [mining]
    cues:
      patterns: ['{greening}']
    require:
      words: [矿山]
"""
    text = DEFAULT_TEXT.replace("overrides:\n", "overrides:" + rule, 1)
    text = text.replace("lexicons:\n", "lexicons:\n  greening: [复绿, 植被恢复]\n", 1)
    path = tmp_path / "county.yaml"
    path.write_text(text, encoding="utf-8")
    county = load_table(path)
    hit = normalize("矿山开采后一直没有复绿")
    assert decide(county, hit, "mining").rule == "county_mining"
    assert decide(county, hit, "environment").route == NO_ROUTE  # only_for
    assert decide(county, normalize("河堤一直没有复绿"), "mining").route == NO_ROUTE  # require


# --- validation errors name the line ------------------------------------------------------------


def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def _load_broken(tmp_path: Path, old: str, new: str, count: int = 1) -> tuple[Path, str, str]:
    assert old in DEFAULT_TEXT, old
    text = DEFAULT_TEXT.replace(old, new, count)
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RoutingConfigError) as info:
        load_table(path)
    return path, text, str(info.value)


def test_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    old = "    department: 不动产登记中心\n"
    path, text, message = _load_broken(tmp_path, old, old + "    department: 房产局\n")
    line = _line_of(text, "    department: 房产局")
    assert message.startswith(f"{path}:{line}: duplicate key 'department'")
    assert f"line {line - 1}" in message


def test_duplicate_issue_type(tmp_path: Path) -> None:
    old = "  health:\n"
    path, text, message = _load_broken(tmp_path, old, "  mining:\n")
    line = _line_of(text, "  mining:\n    name: 卫生计生")
    assert message.startswith(f"{path}:{line}: duplicate key 'mining'")


def test_missing_department(tmp_path: Path) -> None:
    old = "    department: 交通运输局\n"
    path, text, message = _load_broken(tmp_path, old, "")
    line = _line_of(text, "  transport:") + 1  # the issue type's own lines start here
    assert message == f"{path}:{line}: issue type 'transport' has no department"


def test_unknown_route_in_rule(tmp_path: Path) -> None:
    path, text, message = _load_broken(tmp_path, "    route: agri\n", "    route: agricult\n")
    line = _line_of(text, "    route: agricult")
    assert message.startswith(f"{path}:{line}: unknown route 'agricult'")


def test_unknown_issue_type_in_rule_filter(tmp_path: Path) -> None:
    old = "    route: forestry\n    order: 30\n"
    path, text, message = _load_broken(tmp_path, old, old + "    not_for: [mining, minning]\n")
    line = _line_of(text, "    not_for: [mining, minning]")
    assert message.startswith(f"{path}:{line}: unknown issue type 'minning'")


def test_unknown_fallback_issue_type(tmp_path: Path) -> None:
    old = "fallback_issue_type: other"
    path, text, message = _load_broken(tmp_path, old, "fallback_issue_type: others")
    assert message.startswith(f"{path}:{_line_of(text, 'fallback_issue_type')}: unknown issue type")


def test_bad_regex_names_its_line(tmp_path: Path) -> None:
    old = "        - '打了[^,。!?;]{0,4}官司'\n"
    path, text, message = _load_broken(tmp_path, old, "        - '打了[^,。!?;{0,4}官司'\n")
    line = _line_of(text, "        - '打了[^,。!?;{0,4}官司'")
    assert message.startswith(f"{path}:{line}:")
    assert "bad regular expression" in message


def test_unknown_lexicon(tmp_path: Path) -> None:
    old = "          b: '{corruption}'"
    path, text, message = _load_broken(tmp_path, old, "          b: '{corrupt}'")
    assert message.startswith(f"{path}:{_line_of(text, old.replace('corruption', 'corrupt'))}:")
    assert "unknown lexicon {corrupt}" in message


def test_bad_disposition_and_unknown_field(tmp_path: Path) -> None:
    old = "    department: 林业局\n    disposition: 转送\n"
    path, text, message = _load_broken(
        tmp_path, old, "    department: 林业局\n    disposition: 移交\n"
    )
    assert message.startswith(f"{path}:{_line_of(text, 'disposition: 移交')}:")
    _, text, message = _load_broken(tmp_path, "    order: 40\n", "    order: 40\n    orde: 41\n")
    assert f":{_line_of(text, 'orde: 41')}: unknown field 'orde'" in message


def test_ambiguous_order_and_duplicate_rule_id(tmp_path: Path) -> None:
    _, text, message = _load_broken(tmp_path, "    order: 40\n", "    order: 30\n")
    line = _line_of(text, "route: agri") + 1
    assert f":{line}: override rule 'agri' has the same order 30 as rule 'forestry'" in message
    _, text, message = _load_broken(tmp_path, "  - id: agri\n", "  - id: forestry\n")
    second = text.index("  - id: forestry", text.index("  - id: forestry") + 1)
    line = text[:second].count("\n") + 1
    assert f":{line}: duplicate override rule id 'forestry'" in message


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    old = "  transport:\n    name: 交通运输\n"
    path, _, message = _load_broken(tmp_path, old, "  transport:\n    name: [交通运输\n")
    assert re.match(rf"{re.escape(str(path))}:\d+: YAML syntax error", message), message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(RoutingConfigError, match="file not found"):
        load_table(tmp_path / "nope.yaml")


def test_points_must_be_non_zero_whole_numbers(tmp_path: Path) -> None:
    old = "    hints:\n"
    hint = "      - points: 0\n        words: [大家]\n"
    path, text, message = _load_broken(tmp_path, old, old + hint)
    line = _line_of(text, hint)
    assert message.startswith(f"{path}:{line}: points of a hint")
    _, _, message = _load_broken(tmp_path, old, old + hint.replace("points: 0", "points: many"))
    assert "whole number other than 0" in message


def test_hint_needs_points_and_cues(tmp_path: Path) -> None:
    old = "    hints:\n"
    hint = "      - head: 100\n        words: [大家]\n"
    path, text, message = _load_broken(tmp_path, old, old + hint)
    assert message.startswith(f"{path}:{_line_of(text, '      - head: 100')}:")
    assert "has no points" in message
    _, _, message = _load_broken(tmp_path, old, old + "      - points: 1\n        head: 100\n")
    assert "has no words, patterns or near" in message
    hint = "      - points: 1\n        word: [大家]\n"
    _, text, message = _load_broken(tmp_path, old, old + hint)
    assert f":{_line_of(text, '        word: [大家]')}: unknown field 'word'" in message


def test_count_rule_has_points_or_alone(tmp_path: Path) -> None:
    old = "        points: 2\n      - after:"
    new = "        points: 2\n        alone: false\n      - after:"
    _, text, message = _load_broken(tmp_path, old, new)
    assert f":{_line_of(text, '        alone: false')}: a count rule has either points" in message


def test_min_weak_is_the_old_name_of_min_points(tmp_path: Path) -> None:
    old = "    min_points: 4\n"
    _, text, message = _load_broken(tmp_path, old, old + "    min_weak: 2\n")
    line = _line_of(text, "    min_points: 4\n    min_weak: 2") + 1
    assert f":{line}: " in message
    assert "keep only min_points" in message


# --- literal gates: an optimisation that must never change a result ----------------------------


@pytest.mark.parametrize(
    ("pattern", "gate"),
    [
        ("法院判决", ("法院判决",)),
        ("(?:砍|打)死(?:你|他)", ("打死", "砍死")),
        ("全体(?:业主|村民)", ("全体",)),  # one string is cheaper to look for than two
        ("自杀(?!身亡)", ("自杀",)),
        ("打了[^,。]{0,4}官司", ("打了",)),
        ("(?:已|已经)(?:向[^,。]{0,12})?(?:起诉|上诉)", ("上诉", "起诉")),
        ("我(?!们)", None),  # one character: in nearly every text
        ("[^,]{2}", None),
        ("a|b|c", None),
        ("(?i)abc", None),  # case-insensitive: literals would miss "ABC"
    ],
)
def test_literal_gate(pattern: str, gate: tuple[str, ...] | None) -> None:
    found = literal_gate(re.compile(pattern))
    assert (sorted(found) if found else None) == (sorted(gate) if gate else None)


def test_gates_never_change_what_is_found(table: RoutingTable) -> None:
    texts = [
        normalize(text)
        for text in (
            "我已起诉开发商,法院还没判。村支书贪污补偿款,我们实名举报。",
            "全体村民坚决反对。大不了跟他们同归于尽,我就跳楼。我们要去北京上访!",
            "外嫁女的承包地被收回。林权证办不下来。组长私占鱼塘。",
            "没有任何关键词的普通留言,路灯坏了。",
        )
    ]
    cue_sets = [cues for rule in table.overrides for cues in (rule.cues, rule.weak)]
    cue_sets += [table.flags["escalation"].cues, table.flags["extreme"].cues]
    cue_sets += [table.collective.cues] + [hint.cues for hint in table.collective.hints]
    for cues in cue_sets:
        plain = CueSet(
            patterns=cues.patterns,
            near=tuple(NearPair(n.a, n.b, n.within) for n in cues.near),
            negation=cues.negation,
            window=cues.window,
            exclude=cues.exclude,
            head=cues.head,
            tail=cues.tail,
        )
        object.__setattr__(plain, "gates", (None,) * len(cues.patterns))
        for near in plain.near:
            object.__setattr__(near, "gates", (None, None))
        for text in texts:
            assert cues.find(text) == plain.find(text)
            assert cues.first(text) == plain.first(text)
            assert cues.count(text, 3) == plain.count(text, 3)


def test_first_chars() -> None:
    assert first_chars("a?b") == {"a", "b"}
    assert first_chars("(?:余|多)?户") == {"余", "多", "户"}
    assert first_chars("a*") is None  # may match the empty string
    assert first_chars(".x") is None  # any character
    assert " " in (first_chars(r"\s*人") or set())


# --- figures on the shared data (skipped when ../shared is absent) -------------------------------

SHARED_CSV = ROOT.parent / "shared" / "data" / "petitions13_train.csv"
# Measured on all annotated rows. The collective F1 target (0.8) is not reached with lexicon
# rules on these labels (79 % on all rows, 76 % held out; see docs/routing.md): it is checked
# as xfail, and the floors below guard against regressions.
FLOORS = {"override_recall": 0.80, "collective_f1": 0.80, "held_out_collective_f1": 0.77}


def _eval_module() -> Any:
    spec = importlib.util.spec_from_file_location("eval_rules", ROOT / "scripts" / "eval_rules.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("eval_rules", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shared_figures() -> dict[str, Any]:
    if not SHARED_CSV.is_file():
        pytest.skip(f"{SHARED_CSV} not found (needs ../shared)")
    module = _eval_module()
    results = module.run(SHARED_CSV, load_table())
    return {
        "all": results["all"],
        "held": results["held-out (30%)"],
        "met": module.targets_met(results["all"]),
        "held_met": module.targets_met(results["held-out (30%)"]),
    }


@pytest.mark.shared
@pytest.mark.parametrize(
    "target",
    [
        "false_fire_rate",
        "extreme_recall",
        "override_recall",
        "collective_f1",
    ],
)
def test_issue_targets_on_shared_data(shared_figures: dict[str, Any], target: str) -> None:
    figures = shared_figures["all"]
    assert figures["override"]["recall_right_route"] >= FLOORS["override_recall"]
    assert figures["collective"]["f1"] >= FLOORS["collective_f1"]
    assert shared_figures["held"]["collective"]["f1"] >= FLOORS["held_out_collective_f1"]
    # The false-fire limit holds on the held-out part too.
    assert shared_figures["held_met"]["false_fire_rate"]
    assert shared_figures["met"][target], (target, figures["override"], figures["collective"])
