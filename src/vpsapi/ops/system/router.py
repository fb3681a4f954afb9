from fastapi import APIRouter

router = APIRouter(prefix="/api/system", tags=["ops: system"])
