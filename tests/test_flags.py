"""Risk flags and priority (``triage.flags``)."""

from __future__ import annotations

import time
from importlib import resources

import pytest

from triage.flags import Flag, PeopleCount, count_people, detect_flags, parse_number, priority
from triage.normalize import normalize
from triage.routing import RoutingTable, load_table, parse_table

DEFAULT_TEXT = resources.files("triage.data").joinpath("routing.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def table() -> RoutingTable:
    return load_table()


def flags_of(table: RoutingTable, text: str) -> dict[str, tuple[str, ...]]:
    return {flag.id: flag.evidence for flag in detect_flags(normalize(text), table)}


# --- numerals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("5", 5),
        ("30", 30),
        ("1000", 1000),
        ("五", 5),
        ("十", 10),
        ("十五", 15),
        ("二十", 20),
        ("三十五", 35),
        ("一百零五", 105),
        ("两千", 2000),
        ("两千五百", 2500),
        ("一万二千", 12000),
        ("五十万", 500_000),
        ("上百", 100),
        ("近千", 1000),
        ("数十", 20),  # 数/几 read as 2: a lower bound
        ("几十", 20),
        ("十几", 12),
        ("三四十", 30),  # "thirty or forty": the smaller
        ("〇", 0),
    ],
)
def test_parse_number(token: str, value: int) -> None:
    assert parse_number(token) == value


@pytest.mark.parametrize("token", ["", "上", "人", "3十"])
def test_parse_number_rejects_non_numbers(token: str) -> None:
    assert parse_number(token) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("我们二十多户村民的地被占了", 20),
        ("30余名职工被拖欠工资", 30),
        ("上百名业主到售楼部维权", 100),
        ("数十户居民受影响", 20),
        ("我们5人多次反映", 5),
        ("共计三十余人", 30),
        ("小区1000多户业主", 1000),
    ],
)
def test_count_people(table: RoutingTable, text: str, value: int) -> None:
    counts = count_people(normalize(text), table.collective)
    assert value in [number for number, _, _ in counts]


@pytest.mark.parametrize(
    "text",
    [
        "每户补偿5万元",
        "我家一家5口人",
        "排名第5名",
        "事故造成死亡3人",
        "我有两个孩子",
        # The people the letter is about, not its writers.
        "开发商叫来张某等三十多名保安强行拆墙",
        "请了刘某等十位教授来论证",
    ],
)
def test_count_people_ignores_other_numbers(table: RoutingTable, text: str) -> None:
    assert [n for n, _, _ in count_people(normalize(text), table.collective) if n >= 5] == []


# --- collective -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "evidence"),
    [
        ("我们5人联名向领导反映征地补偿问题。", "联名"),
        ("我们二十多户村民的承包地被占用。", None),
        ("我们30余名职工被拖欠工资两年。", None),
        ("上百名业主联名要求开发商交房。", "联名"),
        ("全体村民坚决反对在村里建垃圾场。", "全体村民"),
        ("业主们多次到区住建局反映物业收费问题。", "业主们"),
        ("我们是幸福小区的业主,小区电梯经常坏。", None),
        ("我们村民代表多次到镇政府反映情况。", "村民代表"),
        ("数十户居民的房屋开裂,我们要求赔偿。", None),
        # A writer who speaks for the group, even when he writes as "我".
        ("我代表全体村民向领导反映修路的事。", "我代表全体"),
        ("我是五号楼的住户,受全楼住户的委托写这封信。", None),
        ("我是二期的业主代表,先说一下电梯的情况。", None),
        ("我们的业委会已经三次去街道办反映停车难。", None),
        ("本会全体成员恳请街道重新公示。", "本会"),
        ("我们(大约有三百多户)一直没拿到钥匙。", None),
        # Signed by the whole group at the very end.
        ("小区门口的垃圾站臭气熏天,请领导重视。幸福小区全体业主 2019年5月1日", None),
    ],
)
def test_collective(table: RoutingTable, text: str, evidence: str | None) -> None:
    found = flags_of(table, text)
    assert "collective" in found, text
    if evidence:
        assert any(evidence in hit for hit in found["collective"]), found


@pytest.mark.parametrize(
    ("text", "evidence"),
    [
        # A writer who writes as "我" but speaks for a group named further on.
        ("楼下饭店油烟太大,我代表幸福里三栋全体住户请求处理。", "我代表"),
        ("今天我替东湖花园两百多户业主写信求助。", "我替"),
        # Five or more names listed after 联系人/签名.
        ("小区水压太低,请领导重视。联系人:张建国、李明华、王志强、赵丽萍、钱卫东", "联系人"),
        # Signed by 广大 + the group.
        ("菜市场噪音太大,恳请处理。东湖花园广大业主 2020年3月2日", "业主"),
        # "We are <estate>," names the writers as the estate's residents.
        ("我们是东湖花园小区,门口的路灯坏了一个月没人修。", None),
        # The group acting: going to an office, opposing together (plus "我们" early on).
        ("小区路灯坏了半年,业主多次到街道办反映无果,我们希望尽快修好。", "业主多次到街道"),
        ("我们村口要建砂场,村民强烈反对,请领导重视。", "村民强烈反对"),
        # 我小区 is "our estate", not one writer.
        ("我小区门前的马路坑坑洼洼,我们都是这里的业主,请领导重视。", None),
    ],
)
def test_collective_readings(table: RoutingTable, text: str, evidence: str | None) -> None:
    found = flags_of(table, text)
    assert "collective" in found, text
    if evidence:
        assert any(evidence in hit for hit in found["collective"]), found


@pytest.mark.parametrize(
    "text",
    [
        "我和我老婆都六十多岁了,征地补偿款一直没到位。",
        "我们两个老人没有住的地方,我们村的干部不管。",
        "我家一家5口人挤在一间房里。",
        "小区路灯坏了,请尽快修理。",
        # One writer who mentions the group is not a group of writers.
        "我是幸福小区的一名业主,开发商至今不办房产证,业主们都很气愤。",
        "本人在小区住了十年,业主们对物业意见很大。",
        # "Ordinary people" said by one writer; a total of the estate's households.
        "我们是老百姓,不懂这些政策。",
        "小区共计800余户,电梯经常坏。",
        # Third-person mentions of a group with nothing else: below min_points.
        "小区里有很多业主养狗。",
        "以免引发群体性事件。",
        # 业主们 alone says who is affected, not that they act together.
        "业主们对物业收费意见很大。",
        # 全体业主大会 is a meeting the letter talks about.
        "物业说下个月开全体业主大会讨论电梯维修。",
        # A family, not a group; an owner who got a permit is not going to an office.
        "我代表全家和隔壁几位住户谢谢您。",
        "业主拿到规划许可证复印件后,我们发现楼间距不够。",
        "开发商叫来张某等三十多名保安强行拆墙。",
    ],
)
def test_not_collective(table: RoutingTable, text: str) -> None:
    assert "collective" not in flags_of(table, text)


def test_collective_points_add_up(table: RoutingTable) -> None:
    # "我们" in the opening (2) + 村民代表 (2) reach min_points 4; either alone does not.
    assert "collective" in flags_of(table, "我们村民代表多次找镇里。")
    assert "collective" not in flags_of(table, "村民代表多次找镇里。")
    assert "collective" not in flags_of(table, "我们多次找镇里。")
    # A count that may be of bystanders (2) + a group in action (3).
    assert "collective" in flags_of(table, "小区共计800余户,业主多次维权无果。")


def test_min_points_is_data() -> None:
    strict = parse_table(DEFAULT_TEXT.replace("min_points: 4", "min_points: 40"))
    assert strict.collective.min_points == 40
    assert not detect_flags(normalize("业主们对物业收费意见很大。"), strict)
    lenient = parse_table(DEFAULT_TEXT.replace("min_points: 4", "min_points: 1"))
    assert [f.id for f in detect_flags(normalize("我们多次找镇里。"), lenient)] == ["collective"]


def test_hints_are_ordered_for_early_exit(table: RoutingTable) -> None:
    points = [hint.points for hint in table.collective.hints]
    positive = [p for p in points if p > 0]
    negative = [p for p in points if p < 0]
    assert points == positive + negative  # evidence for first …
    assert positive == sorted(positive, reverse=True)  # … strongest first
    assert negative == sorted(negative)


def test_count_people_carries_points(table: RoutingTable) -> None:
    counts = count_people(normalize("我们二十多户,小区共计800户"), table.collective, 5)
    assert [(c.number, c.points) for c in counts] == [(20, None), (800, 2)]
    assert isinstance(counts[0], PeopleCount) and counts[0].words == "二十多户"


LEGACY_COLLECTIVE = """  collective:
    name: 集体访
    min_people: 5
    cues:
      words: [联名]
      patterns: ['全体{petitioners}', '{petitioners}(?:们|代表)']
    count:
      - before: '我们|共'
        after: '\\s*(?:余|多)?(?:人|名|户|位)'
      - after: '\\s*(?:余|多)?户'
        alone: false
    weak:
      patterns: ['(?:广大|很多)(?:的)?{petitioners}', '^[^。!?]{0,60}?我们']
    min_weak: 2
    small_group: '我们(?:俩|两个)|我和我老婆'

"""


def _legacy_table() -> RoutingTable:
    start = DEFAULT_TEXT.index("  collective:\n")
    end = DEFAULT_TEXT.index("  escalation:\n")
    return parse_table(DEFAULT_TEXT[:start] + LEGACY_COLLECTIVE + DEFAULT_TEXT[end:])


def test_first_version_collective_section_still_works() -> None:
    # weak hints are a point each, min_weak of them raise the flag, small_group cancels them;
    # a count with alone: false is one weak hint.
    table = _legacy_table()

    def raised(text: str) -> bool:
        return "collective" in {flag.id for flag in detect_flags(normalize(text), table)}

    assert raised("业主们对物业收费意见很大。")
    assert raised("我们二十人多次反映。")
    assert raised("我们小区很多业主反映电梯坏了。")  # two weak hints
    assert not raised("小区很多业主反映电梯坏了。")  # one
    assert raised("我们小区有三十多户,很多业主反映电梯坏了。")  # count + weak
    assert not raised("我和我老婆说:我们小区很多业主反映电梯坏了。")  # small group


# --- escalation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "再不解决,我们就去北京上访。",
        "已经越级上访多次。",
        "我们准备到省里上访讨个说法。",
        "尊敬的国家信访局领导:",
        "我要向中央反映你们的问题。",
        "过几天就进京。",
        "村民们商量集体赴省上访。",
    ],
)
def test_escalation(table: RoutingTable, text: str) -> None:
    found = flags_of(table, text)
    assert "escalation" in found, text
    assert found["escalation"]


@pytest.mark.parametrize(
    "text",
    [
        "西地省人民政府领导:您好,我在省政府网站留言反映小区噪音问题。",  # sent to a 省 platform
        "我到北京打工多年,今年回乡发现宅基地被占。",
        "他们还要去省里打报告等批复。",
        "镇里要做好工作,防止进京上访。",
    ],
)
def test_not_escalation(table: RoutingTable, text: str) -> None:
    assert "escalation" not in flags_of(table, text)


# --- extreme ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("再不给钱我就从楼上跳下去,跳楼给你们看。", "跳楼"),
        ("逼急了我就喝农药。", "喝农药"),
        ("大不了跟他们同归于尽。", "同归于尽"),
        ("我就跟他们拼命。", "跟他们拼命"),
        ("他说敢告就几刀砍死你。", "砍死你"),
        ("我们只能以死相逼了。", "以死相逼"),
        ("真要逼我自杀吗?", "自杀"),
        ("工人要到政府门口自焚。", "自焚"),
    ],
)
def test_extreme(table: RoutingTable, text: str, word: str) -> None:
    found = flags_of(table, text)
    assert "extreme" in found, text
    assert any(word in hit for hit in found["extreme"])


@pytest.mark.parametrize(
    "text",
    [
        "学校要做好心理辅导,防止自杀。",
        "一旦发生火灾,后果不堪设想。",
        "工人们每天拼命干活,工资却拿不到。",
        "他父亲前年自杀身亡,留下两个孩子。",
    ],
)
def test_not_extreme(table: RoutingTable, text: str) -> None:
    assert "extreme" not in flags_of(table, text)


def test_flag_names_and_order(table: RoutingTable) -> None:
    text = normalize("我们全体村民联名:再不解决就去北京上访,有人说要喝农药。")
    flags = detect_flags(text, table)
    assert [flag.id for flag in flags] == ["collective", "escalation", "extreme"]
    assert [flag.name for flag in flags] == ["集体访", "越级/进京赴省", "过激言行"]
    assert all(isinstance(flag.evidence, tuple) and flag.evidence for flag in flags)
    assert detect_flags("", table) == []


# --- priority ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag_ids", "level"),
    [
        (["extreme"], "urgent"),
        (["collective", "extreme"], "urgent"),
        (["collective"], "high"),
        (["escalation"], "high"),
        (["repeat"], "high"),
        ([], "normal"),
    ],
)
def test_priority(table: RoutingTable, flag_ids: list[str], level: str) -> None:
    assert priority(flag_ids, table) == level
    assert priority(iter(flag_ids), table) == level


def test_priority_accepts_flags(table: RoutingTable) -> None:
    assert priority([Flag("extreme", "过激言行", ("跳楼",))], table) == "urgent"


def test_priority_rules_are_data() -> None:
    text = DEFAULT_TEXT.replace(
        "any_of: [collective, escalation, repeat]", "any_of: [collective, escalation]"
    )
    county = parse_table(text)
    assert priority(["repeat"], county) == "normal"


def test_min_people_is_data() -> None:
    county = parse_table(DEFAULT_TEXT.replace("min_people: 5", "min_people: 50"))
    text = normalize("我们30余名职工被拖欠工资。")
    assert not [n for n, _, _ in count_people(text, county.collective, 50)]


# --- speed ------------------------------------------------------------------------------------


def test_rules_and_flags_are_fast(table: RoutingTable) -> None:
    from triage.routing import decide

    base = normalize(
        "尊敬的领导:我们是某某县某某镇某某村的村民,2018年修路征收了我们组的土地,"
        "补偿款至今没有发到村民手里,村干部说钱被挪用了。我们多次到镇政府反映,"
        "镇里说要等县里批复。现在春耕在即,没有地种,家里老人孩子生活困难。"
    )
    text = (base * 3)[:300]
    for _ in range(20):  # warm up
        decide(table, text, "land_acquisition")
        detect_flags(text, table)
    runs = 200
    start = time.process_time()  # CPU time: robust to other processes on a shared machine
    for _ in range(runs):
        decide(table, text, "land_acquisition")
        detect_flags(text, table)
    per_text = (time.process_time() - start) / runs
    assert per_text < 0.001, f"{per_text * 1000:.3f} ms per 300-character text"
