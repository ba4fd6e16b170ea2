"""The contract's routes, one module per resource; each exports an APIRouter."""
