-- Operations (issue 32): user tokens the server issues, and conversation paging by
-- (updated_at, id). Idempotent.

-- When the server issued the user's token (POST /users); null for tokens a client
-- made up (the original JellyChat clients), refused when REQUIRE_SERVER_TOKENS=1.
alter table public.users add column if not exists issued_at timestamptz;

-- A new user for a token the server made (256 random bits), with its default
-- conversation and greeting as any new user gets.
create or replace function public.jelly_issue_user(p_token text, p_greeting text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_user record;
begin
    select * into v_user from public.jelly_user(p_token, p_greeting);
    update public.users set issued_at = coalesce(issued_at, now()) where id = v_user.user_id;
    return jsonb_build_object('user_id', v_user.user_id, 'created', v_user.created);
end;
$$;

create or replace function public.jelly_token_issued(p_token text)
returns boolean
language sql
stable
set search_path = ''
as $$
    select exists (select 1 from public.users u where u.token = p_token and u.issued_at is not null)
$$;

-- Conversations newest first, paged by (updated_at, id): two conversations updated
-- in the same microsecond are both listed (by updated_at alone, the second was skipped).
drop function if exists public.jelly_list_conversations(text, integer, timestamptz);
create or replace function public.jelly_list_conversations(
    p_token text, p_limit integer default 20, p_before timestamptz default null,
    p_before_id uuid default null
)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(public.jelly_conversation_json(c.id)
                              order by c.updated_at desc, c.id desc), '[]'::jsonb)
    from (select c.id, c.updated_at from public.conversations c
          join public.users u on u.id = c.user_id
          where u.token = p_token
            and (p_before is null
                 or c.updated_at < p_before
                 or (p_before_id is not null and c.updated_at = p_before and c.id < p_before_id))
          order by c.updated_at desc, c.id desc
          limit greatest(p_limit, 0)) c
$$;

select public.jelly_server_only(array[
        'public.jelly_issue_user(text, text)',
        'public.jelly_token_issued(text)',
        'public.jelly_list_conversations(text, integer, timestamptz, uuid)'
    ]);

notify pgrst, 'reload schema';
