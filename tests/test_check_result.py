"""labkit.checks.Result's optional info: shown when given, absent otherwise (as before)."""

from labkit.checks import Report, Result


def test_info_is_shown_on_a_passing_row_and_old_rows_are_unchanged():
    assert Result("EHLO accepted", "pass").text() == "[PASS] EHLO accepted"
    assert Result("EHLO accepted", "pass", info="extensions: SIZE").text() == "[PASS] EHLO accepted: extensions: SIZE"
    failed = Result("MX", "fail", got="NXDOMAIN", rfc="RFC 5321 §5.1")
    assert failed.text().splitlines() == ["[FAIL] MX  (RFC 5321 §5.1)", "    got:      NXDOMAIN"]
    report = Report("t", [Result("SPF", "pass", info="v=spf1 -all", points=0), failed])
    assert report.score == 0 and report.max_score == 1
    assert report.to_json()["results"][0]["info"] == "v=spf1 -all"
    assert ": v=spf1 -all" in report._repr_html_()
