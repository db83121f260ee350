"""Saved searches: a centre's standing query sees matching records from anywhere."""

from __future__ import annotations

from tests.support import STAFF, Federation, achievement_body, demand_body, eventually


async def test_new_records_from_other_centres_are_routed_to_a_saved_search(
    federation: Federation,
) -> None:
    southern, eastern = federation.nodes["southern"], federation.nodes["eastern"]
    saved = await southern.post(
        "/api/v1/saved-searches",
        headers=STAFF,
        json={
            "name": "batteries ready for pilots",
            "q": "电池",
            "kinds": ["achievement"],
            "trl_min": 5,
        },
    )
    assert saved.status_code == 201, saved.text
    search = saved.json()
    assert (
        await southern.post("/api/v1/saved-searches", headers=STAFF, json={"name": "x"})
    ).status_code == 422
    await eventually(lambda: _hub_knows(federation))

    fits = (
        await eastern.post("/api/v1/achievements", headers=STAFF, json=achievement_body(trl=7))
    ).json()
    too_early = achievement_body(trl=3, title_zh="锂电池隔膜涂层", title_en="Separator coating")
    await eastern.post("/api/v1/achievements", headers=STAFF, json=too_early)
    await eastern.post("/api/v1/demands", headers=STAFF, json=demand_body())  # a demand, not wanted
    other = achievement_body(
        trl=8,
        title_zh="深海网箱",
        title_en="Sea cage",
        summary={"en": "Aquaculture"},
        keywords=["aquaculture"],
    )
    await eastern.post("/api/v1/achievements", headers=STAFF, json=other)  # no 电池
    url = f"/api/v1/saved-searches/{search['id']}/alerts"

    async def alerted() -> list[dict] | None:
        return (await southern.get(url, headers=STAFF)).json() or None

    [alert] = await eventually(alerted, timeout=15)
    assert (
        alert["record"] == {"centre": "eastern", "id": fits["id"]}
        and alert["kind"] == "achievement"
    )
    assert alert["title"]["zh"] == "锂电池回收再利用技术"

    # A new version of the same record alerts again; a withdrawn search stops alerting.
    body = achievement_body(trl=7, version=1, title_en="Lithium battery recycling v2")
    await eastern.put(f"/api/v1/achievements/{fits['id']}", headers=STAFF, json=body)

    async def two() -> bool:
        return len((await southern.get(url, headers=STAFF)).json()) == 2

    await eventually(two, timeout=15)
    assert (
        await southern.delete(f"/api/v1/saved-searches/{search['id']}", headers=STAFF)
    ).status_code == 200
    assert (await southern.get(url, headers=STAFF)).status_code == 404
    assert (await southern.get("/api/v1/saved-searches", headers=STAFF)).json() == []


async def _hub_knows(federation: Federation) -> bool:
    from sqlmodel import Session, select

    from ctta.hub.alerts.models import StandingQuery

    with Session(federation.hub_app.state.engine) as session:
        return session.exec(select(StandingQuery)).first() is not None
