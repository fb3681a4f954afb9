from fastapi import APIRouter

# No prefix: it serves /api/monitoring/... and the WebSocket /ws/monitoring.
router = APIRouter(tags=["ops: monitoring"])
