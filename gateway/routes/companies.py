from contracts import contacts as s
from gateway.calls import call
from gateway.lists import from_index
from gateway.routes import api

TAG = "companies"


@api.route("/companies", "GET", "List companies", TAG, query=s.CompanyListQuery,
           response=s.CompanyPage, permission="companies:read")
def list_companies(body, params):
    return from_index("company", "contacts", "list_companies", params)


@api.route("/companies", "POST", "Create a company", TAG, body=s.CompanyIn,
           response=s.CompanyOut, status=201, errors=(400, 413, 415, 422, 503, 504),
           permission="companies:create")
def create_company(body, params):
    return call("contacts", "create_company", body)


@api.route("/companies/{company_id}", "GET", "Get a company with its people", TAG,
           response=s.CompanyWithPeople, permission="companies:read")
def get_company(company_id, body, params):
    return call("contacts", "get_company", company_id)


@api.route("/companies/{company_id}", "PATCH", "Change some fields of a company", TAG,
           body=s.CompanyIn, partial=True, response=s.CompanyOut,
           errors=(400, 404, 413, 415, 422, 503, 504), permission="companies:manage")
def update_company(company_id, body, params):
    return call("contacts", "update_company", company_id, body)


@api.route("/companies/{company_id}", "DELETE", "Soft-delete a company", TAG,
           response=s.CompanyOut, permission="companies:manage")
def delete_company(company_id, body, params):
    return call("contacts", "delete_company", company_id)


@api.route("/companies/{company_id}/restore", "POST", "Restore a deleted company", TAG,
           response=s.CompanyOut, permission="companies:manage")
def restore_company(company_id, body, params):
    return call("contacts", "restore_company", company_id)
