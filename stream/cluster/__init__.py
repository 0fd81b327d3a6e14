"""Many machines, one view: workers share cameras over Redis, gateways serve every dashboard and the HTTP API.

* :mod:`.bus`: live results and events through a capped Redis stream (workers write, gateways read);
* :mod:`.registry`: sources declared once in Redis, claimed by workers with renewed leases;
* :mod:`.worker`: ``facestream worker`` (a pipeline whose sources come and go with its leases);
* :mod:`.gateway`: ``facestream gateway`` (the websocket stream, dashboard, ``/stats`` of every worker, API);
* :mod:`.api`: the HTTP API (identify, verify, enrol, people), also served by ``facestream run``.
"""
