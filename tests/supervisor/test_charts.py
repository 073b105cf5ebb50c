"""loyalty.charts: accessible, escaped, sensible axes, no failure on empty or zero data."""

import re
import xml.etree.ElementTree as ET

import pytest

from loyalty.charts import PALETTE, bar_chart, line_chart, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(str(svg))  # fails the test if the markup is not well-formed XML


@pytest.mark.parametrize("chart", [bar_chart, line_chart])
def test_it_is_a_named_image_with_every_value_in_its_description(chart):
    svg = chart(labels=["Jan", "Feb"], series={"Issued": [1200, 80], "Redeemed": [40, 0]}, title="Points")
    root = parse(svg)
    assert root.get("role") == "img"
    title_id, desc_id = root.get("aria-labelledby").split()
    assert root.find(f"{SVG}title").get("id") == title_id
    assert root.find(f"{SVG}title").text == "Points"
    desc = root.find(f"{SVG}desc")
    assert desc.get("id") == desc_id
    assert desc.text == "Issued: Jan 1,200, Feb 80; Redeemed: Jan 40, Feb 0"


def test_two_charts_on_one_page_have_distinct_ids():
    first = parse(bar_chart(labels=["a"], series={"s": [1]}, title="one"))
    second = parse(bar_chart(labels=["a"], series={"s": [1]}, title="two"))
    assert first.get("aria-labelledby") != second.get("aria-labelledby")


@pytest.mark.parametrize("chart", [bar_chart, line_chart])
def test_it_escapes_every_text(chart):
    evil = "<script>alert(1)</script>&"
    svg = str(chart(labels=[evil], series={evil: [3]}, title=evil, unit=evil))
    assert "<script>" not in svg
    parse(svg)
    assert "&lt;script&gt;" in svg


def test_bars_scale_to_the_axis_and_a_legend_names_each_series():
    root = parse(bar_chart(labels=["Jan", "Feb"], series={"A": [100, 50], "B": [0, 25]}, title="t"))
    series = root.findall(f".//{SVG}g[@class]")
    groups = [g for g in series if "chart-series" in g.get("class")]
    assert [g.get("fill") for g in groups] == list(PALETTE[:2])
    heights = [float(r.get("height")) for r in groups[0].findall(f"{SVG}rect")]
    assert heights[0] == pytest.approx(2 * heights[1])  # 100 is twice 50 on a zero-based axis
    zero_bar = groups[1].findall(f"{SVG}rect")[0]
    assert float(zero_bar.get("height")) == 0
    legend = root.find(f".//{SVG}g[@class='chart-legend']")
    assert [t.text for t in legend.findall(f"{SVG}text")] == ["A", "B"]


def test_line_series_differ_by_marker_shape_as_well_as_colour():
    root = parse(line_chart(labels=["Jan", "Feb"], series={"A": [1, 2], "B": [2, 1]}, title="t"))
    groups = [g for g in root.iter(f"{SVG}g") if "chart-series" in (g.get("class") or "")]
    assert len(groups[0].findall(f"{SVG}circle")) == 2
    assert len(groups[1].findall(f"{SVG}rect")) == 2
    assert groups[0].find(f"{SVG}polyline") is not None


@pytest.mark.parametrize("chart", [bar_chart, line_chart])
@pytest.mark.parametrize("labels, series", [([], {"A": []}), (["Jan"], {}), ([], {})])
def test_empty_data_says_so(chart, labels, series):
    root = parse(chart(labels=labels, series=series, title="Nothing"))
    assert "chart-empty" in root.get("class")
    assert root.find(f"{SVG}desc").text == "No data for this period."


def test_all_zero_data_gets_a_zero_to_one_axis():
    svg = str(bar_chart(labels=["Jan"], series={"A": [0]}, title="t"))
    parse(svg)
    ticks = re.findall(r'class="chart-tick"[^>]*>([^<]+)<', svg)
    assert ticks[0] == "0" and ticks[-1] == "1"


def test_short_series_are_padded_and_none_counts_as_zero():
    root = parse(bar_chart(labels=["a", "b", "c"], series={"A": [5, None]}, title="t"))
    assert root.find(f"{SVG}desc").text == "A: a 5, b 0, c 0"


def test_many_labels_are_thinned_so_they_do_not_overlap():
    labels = [f"day {n}" for n in range(60)]
    svg = str(line_chart(labels=labels, series={"A": list(range(60))}, title="t"))
    assert len(re.findall(r'class="chart-label"', svg)) <= 12


@pytest.mark.parametrize(
    "low, high, expected",
    [
        (0, 100, [0, 25, 50, 75, 100]),
        (0, 7, [0, 2, 4, 6, 8]),
        (-30, 90, [-50, 0, 50, 100]),
        (0, 0.4, [0, 0.1, 0.2, 0.3, 0.4]),
        (5, 5, [0, 2, 4, 6]),
    ],
)
def test_nice_ticks_are_round_and_include_zero(low, high, expected):
    assert nice_ticks(low, high) == expected


def test_units_appear_in_the_description_and_tooltips():
    svg = str(bar_chart(labels=["Jan"], series={"Liability": [12.5]}, title="t", unit="EUR"))
    assert "Jan 12.5 EUR" in svg
    assert "Liability, Jan: 12.5 EUR" in svg
