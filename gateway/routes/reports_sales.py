from contracts import deals as s
from gateway.calls import call
from gateway.routes import api

TAG = "reports"


@api.route("/reports/funnel", "GET", "Funnel of a pipeline over a period: deals entering each "
           "stage, conversion to the next stage and to won, average time in each stage", TAG,
           query=s.FunnelQuery, response=s.FunnelReport, permission="reports:read")
def funnel_report(body, params):
    return call("deals", "funnel_report", params)


@api.route("/reports/sales", "GET", "Won count and amount, average deal size, win rate and "
           "cycle length of deals closed in a period, by owner, month or lead source", TAG,
           query=s.SalesQuery, response=s.SalesReport, permission="reports:read")
def sales_report(body, params):
    return call("deals", "sales_report", params)


@api.route("/reports/forecast", "GET", "Open amount weighted by stage probability per expected "
           "close month", TAG, query=s.ForecastQuery, response=s.ForecastReport,
           permission="reports:read")
def forecast_report(body, params):
    return call("deals", "forecast_report", params)
