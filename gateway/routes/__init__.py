"""The contract's routes, one module per resource, and the orchestrator's probes (`probes`);
each exports an APIRouter."""
