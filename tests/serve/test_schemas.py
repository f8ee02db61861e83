"""/openapi.json describes every answer, and real answers validate against it (jsonschema, a validator
independent of the Pydantic models the schema was generated from)."""
import jsonschema
import pytest

from .helpers import TOKEN, products_upload, search_photo, street_query

JSON = "application/json"


def _schema(openapi, path, method, status):
    """The JSON Schema of one answer, its references resolved against the document's components."""
    content = openapi["paths"][path][method]["responses"][str(status)]["content"]
    return {**content[JSON]["schema"], "components": openapi["components"]}


def _check(openapi, path, method, response):
    jsonschema.validate(response.json(), _schema(openapi, path, method, response.status_code),
                        cls=jsonschema.Draft202012Validator)


def test_every_route_has_a_response_schema(served):
    client, *_ = served
    openapi = client.get("/openapi.json").json()
    routes = [(path, method) for path, item in openapi["paths"].items() for method in item]
    assert len(routes) == 7
    for path, method in routes:
        answer = openapi["paths"][path][method]["responses"]["200"]
        assert answer.get("content"), f"{method.upper()} {path} has no response schema"
        for media in answer["content"].values():
            assert media["schema"] != {}, f"{method.upper()} {path}: an untyped answer"


def test_real_answers_validate_against_the_schema(served):
    client, _, _, pcfg = served
    openapi = client.get("/openapi.json").json()
    data, category, box, _ = street_query(pcfg)
    searched = search_photo(client, data, category=category, box=",".join(map(str, box)), k=3)
    assert searched.status_code == 200 and searched.json()["garments"][0]["results"]
    _check(openapi, "/api/search", "post", searched)
    looked = search_photo(client, data, k=2)  # shop the look: detector labels
    _check(openapi, "/api/search", "post", looked)
    _check(openapi, "/api/catalogue", "get", client.get("/api/catalogue"))
    _check(openapi, "/healthz", "get", client.get("/healthz"))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    added = client.post("/api/catalogue", files=products_upload(pcfg, "SCHEMA-1", category, 1), headers=auth)
    assert added.status_code == 200, added.text
    _check(openapi, "/api/catalogue", "post", added)
    removed = client.delete("/api/catalogue/products/SCHEMA-1", headers=auth)
    _check(openapi, "/api/catalogue/products/{product}", "delete", removed)


@pytest.mark.parametrize("status, call", [
    (404, lambda c: c.get("/api/photos/999999999")),
    (422, lambda c: c.get("/api/photos/-1")),
    (400, lambda c: search_photo(c, b"not a photo")),
    (401, lambda c: c.delete("/api/catalogue/products/x")),
])
def test_refusals_validate_against_the_error_schema(served, status, call):
    client, *_ = served
    openapi = client.get("/openapi.json").json()
    response = call(client)
    assert response.status_code == status
    path = {404: "/api/photos/{photo_id}", 422: "/api/photos/{photo_id}", 400: "/api/search",
            401: "/api/catalogue/products/{product}"}[status]
    method = "delete" if status == 401 else "post" if status == 400 else "get"
    _check(openapi, path, method, response)
